#!/usr/bin/env python3
"""Issue #10's FP8 loss check: fp8 loss curves against bf16's, over several seeds.

Input: a curves JSON ({"<precision>[:<recipe>]:<seed>": [loss per step, ...]}), or run directories
with --runs SPEC=DIR (events.jsonl's rank-0 metric losses; --write-curves saves them as such a JSON,
which is what tools/gpu/fp8_check.sh does).

Why seeds: llama-1b from scratch for a few hundred steps with a short warm-up is chaotic. Two bf16
runs that differ only in their seed (or only in the order of floating-point sums) end up to ~2.4%
apart in their last 50 steps and ~5% in some 10-step windows, so one fp8 run against one bf16 run
says little. The check compares the mean curve of each group of seeds with bf16's mean curve:

  tolerance: after the first SKIP steps, every 10-step window of the mean fp8 curve within 1% of the
  mean bf16 curve, and the last 50 steps' mean within 0.5%.

It also prints each group's seed spread (the noise floor) and the same-seed pairs' differences.
One JSON line per compared group; exit status 1 when a group of ≥ 2 seeds is out of tolerance (a
single-seed group is reported, not judged). --self-test checks the judgement on synthetic curves.
"""
import argparse
import itertools
import json
import statistics
import sys

WINDOW, TAIL = 10, 50
WINDOW_TOL, TAIL_TOL = 0.01, 0.005


def load_events(path):
    with open(path) as f:
        return [r["data"]["loss"] for r in map(json.loads, f) if r.get("type") == "metric" and r.get("rank", 0) == 0]


def split(spec):
    """'fp8:hp_wgrad:7' -> ('fp8:hp_wgrad', '7'); 'bf16::11' -> ('bf16', '11'); 'bf16' -> ('bf16', '1337')."""
    parts = spec.split(":")
    prec = parts[0]
    recipe = parts[1] if len(parts) > 1 else ""
    seed = parts[2] if len(parts) > 2 and parts[2] else "1337"
    return (prec + (":" + recipe if recipe else "")), seed


def mean(xs, a, b):
    return sum(xs[a:b]) / (b - a)


def mean_curve(curves, n):
    return [statistics.mean(c[i] for c in curves) for i in range(n)]


def rel(a, b):
    return abs(a - b) / abs(b)


def self_test():
    """Synthetic curves: a decaying loss with per-seed noise; an unbiased group must pass, one 2% above
    bf16 must fail, and a single-seed group must be reported but not judged."""
    import math
    import random
    import subprocess
    import tempfile

    def curve(seed, bias):
        rng = random.Random(seed)
        return [(5 + 6 * math.exp(-i / 40)) * (1 + bias) + rng.gauss(0, 0.05) for i in range(300)]

    curves = {f"bf16::{s}": curve(s, 0) for s in (1, 2, 3)}
    curves.update({f"fp8::{s}": curve(s + 10, 0) for s in (1, 2, 3)})
    curves.update({f"fp8:biased:{s}": curve(s + 20, 0.02) for s in (1, 2, 3)})
    curves["fp8:single:1"] = curve(31, 0.05)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(curves, f)
    r = subprocess.run([sys.executable, __file__, f.name], capture_output=True, text=True)
    rows = {j["group"]: j for j in map(json.loads, r.stdout.splitlines())}
    checks = [
        (rows["fp8"]["fp8_loss_check"] == "ok", "an unbiased group passes"),
        (rows["fp8:biased"]["fp8_loss_check"] == "OUT OF TOLERANCE", "a 2% bias fails"),
        (rows["fp8:single"]["fp8_loss_check"] == "too few seeds", "one seed is not judged"),
        (r.returncode == 1, "exit status 1 with a group out of tolerance"),
    ]
    for ok, what in checks:
        print(("ok   " if ok else "FAIL ") + what)
    return 0 if all(ok for ok, _ in checks) else 1


def main():
    if "--self-test" in sys.argv[1:]:
        return self_test()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("curves", nargs="?", help="curves JSON")
    ap.add_argument("--runs", nargs="*", default=[], help="SPEC=RUN_DIR (events.jsonl inside)")
    ap.add_argument("--skip", type=int, default=50)
    ap.add_argument("--reference", default="bf16")
    ap.add_argument("--write-curves", metavar="PATH", help="save every curve read, as a curves JSON")
    args = ap.parse_args()

    curves = {}
    if args.curves:
        with open(args.curves) as f:
            curves.update(json.load(f))
    for r in args.runs:
        spec, d = r.split("=", 1)
        try:
            curves[spec] = load_events(d.rstrip("/") + "/events.jsonl")
        except OSError as e:
            print(json.dumps({"run": spec, "error": str(e)}))
    if args.write_curves:
        with open(args.write_curves, "w") as f:
            json.dump(curves, f)
    groups = {}
    for spec, c in curves.items():
        if c:
            g, seed = split(spec)
            groups.setdefault(g, {})[seed] = c
    if args.reference not in groups:
        print(json.dumps({"error": f"no {args.reference} runs among {sorted(curves)}"}))
        return 1
    ref = groups[args.reference]
    n = min(len(c) for g in groups.values() for c in g.values())
    if n < args.skip + TAIL:
        print(json.dumps({"error": f"too few steps: {n}, need {args.skip + TAIL}"}))
        return 1

    def spread(g):  # largest difference between two seeds' last-50-step means (the noise floor)
        tails = [mean(c, n - TAIL, n) for c in g.values()]
        return (max(tails) - min(tails)) / statistics.mean(tails) if len(tails) > 1 else None

    def window_spread(g):  # largest 10-step-window difference between two seeds after the skip
        worst = 0.0
        for a, b in itertools.combinations(g.values(), 2):
            for i in range(args.skip, n - WINDOW + 1):
                worst = max(worst, rel(mean(b, i, i + WINDOW), mean(a, i, i + WINDOW)))
        return worst if len(g) > 1 else None

    ref_mean = mean_curve(list(ref.values()), n)
    failed = False
    for name, g in sorted(groups.items()):
        if name == args.reference:
            continue
        m = mean_curve(list(g.values()), n)
        windows = [rel(mean(m, i, i + WINDOW), mean(ref_mean, i, i + WINDOW)) for i in range(n - WINDOW + 1)]
        worst_after = max(windows[args.skip:])
        tail = (mean(m, n - TAIL, n) - mean(ref_mean, n - TAIL, n)) / mean(ref_mean, n - TAIL, n)
        enough = len(g) >= 2 and len(ref) >= 2  # one seed is reported, not judged
        ok = enough and worst_after <= WINDOW_TOL and abs(tail) <= TAIL_TOL
        failed |= enough and not ok
        pairs = {s: round((mean(g[s], n - TAIL, n) - mean(ref[s], n - TAIL, n)) / mean(ref[s], n - TAIL, n), 5)
                 for s in sorted(g) if s in ref}
        print(json.dumps({
            "group": name, "against": args.reference, "seeds": sorted(g), "reference_seeds": sorted(ref), "steps": n,
            "fp8_loss_check": "ok" if ok else ("too few seeds" if len(g) < 2 or len(ref) < 2 else "OUT OF TOLERANCE"),
            "tolerance": f"mean curves over seeds: 10-step windows within {WINDOW_TOL:.0%} after step {args.skip}, "
                         f"last {TAIL} steps within {TAIL_TOL:.1%}",
            "max_window_rel_diff_after_skip": round(worst_after, 5), "max_window_rel_diff_whole_run": round(max(windows), 5),
            "last50_rel_diff": round(tail, 5), "last50_mean": round(mean(m, n - TAIL, n), 4),
            "reference_last50_mean": round(mean(ref_mean, n - TAIL, n), 4),
            "same_seed_last50_rel_diff": pairs,
            "noise_floor": {"reference_seed_spread_last50": spread(ref) and round(spread(ref), 5),
                            "reference_seed_spread_window_max": window_spread(ref) and round(window_spread(ref), 5),
                            "group_seed_spread_last50": spread(g) and round(spread(g), 5)},
        }))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

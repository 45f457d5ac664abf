#!/usr/bin/env python3
"""Where the GPU waited: the longest gaps between device events in a `bench train --profile` trace.

For each gap of at least --min-us microseconds: its length, the kernels on either side, and the host
ops running when it ended (what the GPU was waiting for). Also the gap totals by size class.
Usage: trace_gaps.py TRACE.json[.gz] [--min-us 10] [--top 25]
"""
import argparse
import gzip
import json


def load(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        return json.load(f)["traceEvents"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("--min-us", type=float, default=10.0)
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    ev = load(a.trace)
    # Kineto's Chrome trace: device work is "kernel", "gpu_memset" and "gpu_memcpy" events; the host's
    # are "cpu_op" (ATen ops) and "cuda_runtime"/"cuda_driver" (API calls); only complete ("X") events.
    def of(cats):
        return sorted((e for e in ev if e.get("ph") == "X" and e.get("cat") in cats and "dur" in e), key=lambda e: e["ts"])
    dev = of(("kernel", "gpu_memset", "gpu_memcpy"))
    cpu = of(("cpu_op", "cuda_runtime", "cuda_driver"))
    if not dev:
        print("no device events")
        return
    gaps, end, last = [], dev[0]["ts"] + dev[0]["dur"], dev[0]
    for e in dev[1:]:
        g = e["ts"] - end
        if g > 0:
            gaps.append((g, end, last["name"], e["name"]))
        if e["ts"] + e["dur"] > end:
            end, last = e["ts"] + e["dur"], e
    span = end - dev[0]["ts"]
    classes = [(0, 2), (2, 5), (5, 10), (10, 100), (100, 1000), (1000, 1e12)]
    print(f"span {span / 1e3:.2f} ms, {len(dev)} device events, idle {sum(g[0] for g in gaps) / 1e3:.2f} ms")
    for lo, hi in classes:
        sel = [g[0] for g in gaps if lo <= g[0] < hi]
        print(f"  gaps {lo:>6g}-{hi:<6g} us: {len(sel):5d}, {sum(sel) / 1e3:8.3f} ms")
    print(f"longest gaps (>= {a.min_us} us):")
    for g, at, before, after in sorted((x for x in gaps if x[0] >= a.min_us), reverse=True)[: a.top]:
        t = at + g  # when the GPU resumed
        host = [c["name"] for c in cpu if c["ts"] <= t <= c["ts"] + c["dur"]]
        print(f"  {g:9.1f} us at +{(at - dev[0]['ts']) / 1e3:9.3f} ms  after {before[:50]!r}  before {after[:50]!r}")
        if host:
            print(f"             host ops then: {', '.join(h[:40] for h in host[-4:])}")


if __name__ == "__main__":
    main()

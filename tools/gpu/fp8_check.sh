#!/usr/bin/env bash
# Issue #10's FP8 check on one H200: llama-1b trained STEPS steps in bf16 and in fp8 from the same
# initial weights and batches (same seed), loss curves compared, and `bench train` tokens/s of both.
# One JSON line per result. The stated tolerance (issue #10: "within a stated tolerance of bf16 over a
# few hundred steps"): after the first SKIP steps (the steep first descent, where a one-step shift of
# the curve alone moves 10-step means by several percent), every sliding 10-step mean of the fp8 loss
# within 2% of bf16's, and the final 50-step mean within 1%. The whole-run maximum is reported too.
#
# RUNS lists the training runs, each `precision[:fp8 recipe][:seed]`, compared with the first (the bf16
# reference). The default adds a bf16 run with another seed (how far two bf16 runs drift apart: the
# noise floor the fp8 difference is read against) and the backward-pass recipes of engine/model/fp8.cpp
# (FATHOM_FP8_RECIPE). PARALLEL runs share the GPU at once (each llama-1b run takes ~30 GB).
# Every loss curve comes back in OUT_DIR/curves.json.
# Usage (device tool): [STEPS=300] [SKIP=50] [RUNS="bf16 fp8"] [PARALLEL=3] [SPEED=1]
#                      ENGINE=/path/to/fathom-engine tools/gpu/fp8_check.sh OUT_DIR
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${1:?out dir}; mkdir -p "$out"
eng=${ENGINE:?ENGINE=path to a CUDA fathom-engine}
export FATHOM_DATA_DIR=${FATHOM_DATA_DIR:-$here/.device-data} FATHOM_WORKSPACE=/tmp/fathom-ws
steps=${STEPS:-300} skip=${SKIP:-50} preset=${PRESET:-llama-1b} parallel=${PARALLEL:-3}
runs=${RUNS:-"bf16 fp8 bf16::7 fp8:e4m3_grads fp8:hp_wgrad"}
train_one() {  # spec: precision[:recipe][:seed]
  local spec=$1 prec recipe seed name
  IFS=: read -r prec recipe seed <<<"$spec"
  name=$(echo "$spec" | tr ':' '_')
  # Its own workspace: runs started together do not race on building the same token cache.
  FATHOM_WORKSPACE=/tmp/fathom-ws-$name FATHOM_FP8_RECIPE=${recipe:-} CUDA_VISIBLE_DEVICES=0 timeout "${RUN_TIMEOUT:-400}" "$eng" train "$here/resources/presets/$preset.yaml" \
    --run-dir "/tmp/fp8c-$name" --no-stdout --set train.precision="$prec" --set run.seed="${seed:-1337}" \
    --set train.max_steps="$steps" --set train.log_interval=1 --set train.eval_interval=0 \
    --set train.sample_interval=0 --set train.gradient_accumulation_steps=1 --set optimizer.warmup_steps=10 \
    --set checkpoint.save_every_steps=0 >"$out/fp8c-$name.log" 2>&1 || { echo "train $spec failed:"; tail -5 "$out/fp8c-$name.log"; }
}
n=0
for spec in $runs; do
  rm -rf "/tmp/fp8c-$(echo "$spec" | tr ':' '_')"
  train_one "$spec" &
  n=$((n + 1))
  [ $((n % parallel)) = 0 ] && { wait; rm -rf /tmp/fp8c-*/checkpoints; }  # each run's final checkpoint: ~15 GB of disk
done
wait; rm -rf /tmp/fp8c-*/checkpoints
python3 - "$skip" "$out/curves.json" $runs <<'PY'
import json, sys
skip, curves_path, specs = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
def losses(spec):
    try:
        p = "/tmp/fp8c-%s/events.jsonl" % spec.replace(":", "_")
        return [r["data"]["loss"] for r in map(json.loads, open(p)) if r.get("type") == "metric" and r.get("rank", 0) == 0]
    except OSError:
        return []
curves = {s: losses(s) for s in specs}
json.dump(curves, open(curves_path, "w"))
ref = specs[0]
a = curves[ref]
w, tail = 10, 50
for s in specs[1:]:
    b = curves[s]
    n = min(len(a), len(b))
    if n < skip + tail:
        print(json.dumps({"run": s, "against": ref, "fp8_loss_check": "too few steps", "ref_steps": len(a), "steps": len(b),
                          "need": skip + tail}))
        continue
    rel = [abs(sum(b[i:i + w]) - sum(a[i:i + w])) / sum(a[i:i + w]) for i in range(n - w + 1)]
    after = max(rel[skip:])
    final = abs(sum(b[n - tail:n]) - sum(a[n - tail:n])) / sum(a[n - tail:n])
    ok = after <= 0.02 and final <= 0.01
    print(json.dumps({"run": s, "against": ref, "fp8_loss_check": "ok" if ok else "OUT OF TOLERANCE", "steps": n, "skip": skip,
                      "tolerance": "10-step means within 2% after skip, final 50-step mean within 1%",
                      "max_rel_diff_10step_mean_after_skip": round(after, 5), "max_rel_diff_10step_mean_whole_run": round(max(rel), 5),
                      "final_50step_rel_diff": round(final, 5), "final_50step_mean_ref": sum(a[n - tail:n]) / tail,
                      "final_50step_mean": sum(b[n - tail:n]) / tail, "signed_final_diff": (sum(b[n - tail:n]) - sum(a[n - tail:n])) / tail}))
PY
[ -n "${SPEED-1}" ] || exit 0
for prec in bf16 fp8; do
  CUDA_VISIBLE_DEVICES=0 timeout 120 "$eng" bench train "$here/resources/presets/$preset.yaml" --steps 6 --warmup 3 \
    --set train.gradient_accumulation_steps=1 --set train.precision=$prec --run-dir "/tmp/fp8b-$prec" 2>"$out/fp8b-$prec.err" \
    | grep '^{' | sed "s/^{/{\"precision_run\":\"$prec\",/"
done

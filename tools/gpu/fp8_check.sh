#!/usr/bin/env bash
# Issue #10's FP8 check on one H200: llama-1b trained STEPS steps in bf16 and in fp8 from the same
# initial weights and batches (same seed), loss curves compared (relative difference of the mean
# loss over sliding 10-step windows), and `bench train` tokens/s of both. One JSON line per result.
# Usage (device tool): ENGINE=/path/to/fathom-engine tools/gpu/fp8_check.sh OUT_DIR
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${1:?out dir}; mkdir -p "$out"
eng=${ENGINE:?ENGINE=path to a CUDA fathom-engine}
export FATHOM_DATA_DIR=${FATHOM_DATA_DIR:-$here/.device-data} FATHOM_WORKSPACE=/tmp/fathom-ws
steps=${STEPS:-100} preset=${PRESET:-llama-1b}
for prec in bf16 fp8; do
  CUDA_VISIBLE_DEVICES=0 timeout 200 "$eng" train "$here/resources/presets/$preset.yaml" --run-dir "/tmp/fp8c-$prec" --no-stdout \
    --set train.precision=$prec --set train.max_steps="$steps" --set train.log_interval=1 --set train.eval_interval=0 \
    --set train.sample_interval=0 --set train.gradient_accumulation_steps=1 --set optimizer.warmup_steps=10 \
    --set checkpoint.save_every_steps=0 >"$out/fp8c-$prec.log" 2>&1 || { echo "train $prec failed:"; tail -5 "$out/fp8c-$prec.log"; }
done
python3 - /tmp/fp8c-bf16/events.jsonl /tmp/fp8c-fp8/events.jsonl <<'PY'
import json, sys
def losses(p):
    try:
        return [r["data"]["loss"] for r in map(json.loads, open(p)) if r.get("type") == "metric" and r.get("rank", 0) == 0]
    except OSError:
        return []
a, b = losses(sys.argv[1]), losses(sys.argv[2])
n = min(len(a), len(b))
if n < 20:
    print(json.dumps({"fp8_loss_check": "too few steps", "bf16_steps": len(a), "fp8_steps": len(b)}))
    raise SystemExit
w = 10
rel = [abs(sum(b[i:i + w]) - sum(a[i:i + w])) / sum(a[i:i + w]) for i in range(n - w + 1)]
print(json.dumps({"fp8_loss_check": "ok" if max(rel) <= 0.02 else "OUT OF TOLERANCE", "steps": n, "tolerance_rel": 0.02,
                  "max_rel_diff_10step_mean": max(rel), "final_10step_mean_bf16": sum(a[n - w:n]) / w,
                  "final_10step_mean_fp8": sum(b[n - w:n]) / w, "first_loss_bf16": a[0], "first_loss_fp8": b[0]}))
PY
for prec in bf16 fp8; do
  CUDA_VISIBLE_DEVICES=0 timeout 120 "$eng" bench train "$here/resources/presets/$preset.yaml" --steps 6 --warmup 3 \
    --set train.gradient_accumulation_steps=1 --set train.precision=$prec --run-dir "/tmp/fp8b-$prec" 2>"$out/fp8b-$prec.err" \
    | grep '^{' | sed "s/^{/{\"precision_run\":\"$prec\",/"
done

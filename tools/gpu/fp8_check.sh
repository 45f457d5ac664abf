#!/usr/bin/env bash
# Issue #10's FP8 check on one H200: llama-1b trained STEPS steps in bf16 and in fp8, several seeds of
# each (a seed fixes the initial weights and the batches), loss curves compared; `bench train` tokens/s
# of both. Runs:  (RUNS, `precision[:fp8 recipe][:seed]`), PARALLEL at once on the GPU (each
# llama-1b run takes ~30 GB; its final ~15 GB checkpoint is deleted after each wave). The curves come
# back in OUT_DIR/curves.json, and tools/gpu/fp8_compare.py judges them: the stated tolerance (issue #10:
# "within a stated tolerance of bf16 over a few hundred steps") is on the mean curves over seeds, since
# two bf16 runs that differ only in their seed end ~2.4% apart here (see fp8_compare.py's docstring):
# every 10-step window after the first SKIP steps within 1% of bf16's, and the last 50 steps within
# 0.5%. FATHOM_FP8_RECIPE variants (engine/model/fp8.cpp) run as e.g. fp8:hp_wgrad:7.
# SPEED (on unless set empty) adds `bench train` tokens/s of bf16 and fp8.
# Usage (device tool): [STEPS=300] [SKIP=50] [RUNS="bf16::1 bf16::2 fp8::1 fp8::2"] [PARALLEL=3] [SPEED=1]
#                      ENGINE=/path/to/fathom-engine tools/gpu/fp8_check.sh OUT_DIR
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${1:?out dir}; mkdir -p "$out"
eng=${ENGINE:?ENGINE=path to a CUDA fathom-engine}
export FATHOM_DATA_DIR=${FATHOM_DATA_DIR:-$here/.device-data} FATHOM_WORKSPACE=/tmp/fathom-ws
steps=${STEPS:-300} skip=${SKIP:-50} preset=${PRESET:-llama-1b} parallel=${PARALLEL:-3}
runs=${RUNS:-"bf16::1337 bf16::7 bf16::11 fp8::1337 fp8::7 fp8::11"}
run_dir() { echo "/tmp/fp8c-$(echo "$1" | tr ':' '_')"; }  # spec → its run directory
train_one() {  # spec: precision[:recipe][:seed]
  local spec=$1 prec recipe seed name
  IFS=: read -r prec recipe seed <<<"$spec"
  name=$(echo "$spec" | tr ':' '_')
  # Its own workspace: runs started together do not race on building the same token cache.
  FATHOM_WORKSPACE=/tmp/fathom-ws-$name FATHOM_FP8_RECIPE=${recipe:-} CUDA_VISIBLE_DEVICES=0 timeout "${RUN_TIMEOUT:-400}" "$eng" train "$here/resources/presets/$preset.yaml" \
    --run-dir "$(run_dir "$spec")" --no-stdout --set train.precision="$prec" --set run.seed="${seed:-1337}" \
    --set train.max_steps="$steps" --set train.log_interval=1 --set train.eval_interval=0 \
    --set train.sample_interval=0 --set train.gradient_accumulation_steps=1 --set optimizer.warmup_steps=10 \
    --set checkpoint.save_every_steps=0 >"$out/fp8c-$name.log" 2>&1 || { echo "train $spec failed:"; tail -5 "$out/fp8c-$name.log"; }
}
n=0
for spec in $runs; do
  rm -rf "$(run_dir "$spec")"
  train_one "$spec" &
  n=$((n + 1))
  [ $((n % parallel)) = 0 ] && { wait; rm -rf /tmp/fp8c-*/checkpoints; }  # each run's final checkpoint: ~15 GB of disk
done
wait; rm -rf /tmp/fp8c-*/checkpoints
run_dirs=(); for spec in $runs; do run_dirs+=("$spec=$(run_dir "$spec")"); done
python3 "$here/tools/gpu/fp8_compare.py" --skip "$skip" --write-curves "$out/curves.json" --runs "${run_dirs[@]}"
[ -n "${SPEED-1}" ] || exit 0
for prec in bf16 fp8; do
  CUDA_VISIBLE_DEVICES=0 timeout 120 "$eng" bench train "$here/resources/presets/$preset.yaml" --steps 6 --warmup 3 \
    --set train.gradient_accumulation_steps=1 --set train.precision=$prec --run-dir "/tmp/fp8b-$prec" 2>"$out/fp8b-$prec.err" \
    | grep '^{' | sed "s/^{/{\"precision_run\":\"$prec\",/"
done

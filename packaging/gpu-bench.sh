#!/usr/bin/env bash
# One device call on the GPU machine: build the engine (CUDA), run the gpu smoke test, benchmark
# training of gpt2-124m and llama-1b in bf16 beside PyTorch eager and torch.compile (same GPU, same
# call), capture a real GPU events.jsonl, then run the rest of the engine tests while time is left.
# Usage (device tool): packaging/gpu-bench.sh   — writes logs and results under $OUT.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${OUT:-$here/out}
mkdir -p "$out"
export FATHOM_DATA_DIR=${FATHOM_DATA_DIR:-$here/.device-data}
export FATHOM_WORKSPACE=/tmp/fathom-ws
t0=$(date +%s)
left() { echo $(( ${BUDGET_S:-570} - ($(date +%s) - t0) )); }
log() { echo "[$(( $(date +%s) - t0 ))s] $*" | tee -a "$out/session.log"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$out/gpu.txt" 2>&1
log "gpu: $(cat "$out/gpu.txt")"
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
cmake -S "$here" -B /tmp/build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DFATHOM_GUI=OFF -DFATHOM_TESTS=ON \
  -DFATHOM_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_PREFIX_PATH="$torch_prefix" >"$out/configure.log" 2>&1 \
  || { log "configure failed"; tail -30 "$out/configure.log"; exit 1; }
timeout $(( $(left) - 200 )) cmake --build /tmp/build-gpu -j16 --target fathom-engine test_gpu_smoke >"$out/build.log" 2>&1 \
  || { log "build failed"; grep -E 'error|Error' "$out/build.log" | head -40; exit 1; }
log "engine built"
eng=/tmp/build-gpu/bin/fathom-engine
$eng --version | tee -a "$out/session.log"
$eng devices | tee -a "$out/session.log"
/tmp/build-gpu/bin/test_gpu_smoke >"$out/test_gpu_smoke.log" 2>&1; log "test_gpu_smoke rc=$? ($(grep -E 'PASSED|FAILED' "$out/test_gpu_smoke.log" | head -2 | tr '\n' ' '))"

bench() {  # name preset ref-args...
  local name=$1 preset=$2; shift 2
  local steps=${BENCH_STEPS:-20}
  timeout 150 $eng bench train "$here/resources/presets/$preset.yaml" --steps "$steps" --warmup 3 \
    --set train.gradient_accumulation_steps=1 --run-dir "/tmp/bench-$name" >"$out/bench-$name-fathom.log" 2>&1
  log "fathom $name: $(grep -o 'bench: .*' "$out/bench-$name-fathom.log" || tail -3 "$out/bench-$name-fathom.log")"
  for mode in eager compile; do
    [ "$(left)" -gt 60 ] || { log "skip torch $mode $name: out of time"; continue; }
    flag=""; [ $mode = compile ] && flag="--compile"
    timeout 200 python3 "$here/tests/bench/torch_reference_train.py" "$@" --steps "$steps" $flag >"$out/bench-$name-torch-$mode.log" 2>&1
    log "torch $mode $name: $(tail -1 "$out/bench-$name-torch-$mode.log")"
  done
}
bench gpt2-124m gpt2-124m --d-model 768 --n-layers 12 --n-heads 12 --n-kv-heads 12 --d-ff 2048 --vocab 50304 --seq 1024 --batch 16 --tie 1
bench llama-1b llama-1b --d-model 2048 --n-layers 16 --n-heads 32 --n-kv-heads 8 --d-ff 8192 --vocab 151936 --seq 2048 --batch 4 --tie 1 --rope-theta 500000

if [ -z "${SKIP_EVENTS:-}" ]; then
# A real GPU run's events (system records every 0.5 s) for the Monitor's replay fixture.
timeout 90 $eng train "$here/resources/presets/gpt2-124m.yaml" --run-dir /tmp/gpu-events --no-stdout \
  --set train.max_steps=150 --set train.gradient_accumulation_steps=1 --set train.log_interval=5 \
  --set telemetry.system_interval_s=0.5 --set train.eval_interval=50 --set train.eval_batches=5 \
  --set train.sample_interval=75 --set checkpoint.save_every_steps=100 >"$out/gpu-events.log" 2>&1
log "gpu events run rc=$?"
cp /tmp/gpu-events/events.jsonl "$out/gpu-events.jsonl" 2>/dev/null
fi

if [ "$(left)" -gt 90 ]; then
  timeout $(( $(left) - 60 )) cmake --build /tmp/build-gpu -j16 >>"$out/build.log" 2>&1
  (cd /tmp/build-gpu && timeout $(( $(left) - 10 )) ctest -j8 -LE 'bench|slow' --output-on-failure >"$out/ctest.log" 2>&1)
  log "ctest: $(grep -E 'tests passed|tests failed' "$out/ctest.log")"
  grep -E '^\s+[0-9]+ - .*\((Failed|Timeout|Subprocess)' "$out/ctest.log" | while read -r l; do log "failed: $l"; done
  grep -E 'Failure|FAILED|error:' "$out/ctest.log" | head -20 >>"$out/session.log"
fi
log "done"

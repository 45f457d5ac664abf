#!/usr/bin/env bash
# On nvidia-h200, one device call (issue #10, fused kernels): build the engine with CUDA kernels
# against PyTorch's LibTorch in /tmp/bk, then
#   1. the kernel tests: test_kernels (gpu: CUDA kernels vs the naive references, engine ops' fused
#      paths vs the LibTorch composites, a transformer with kernels on vs off), test_kernel_reference
#      (references vs composites), test_gpu_smoke (the engine on CUDA, now through the kernels) and
#      test_train_gpu (the trainer on CUDA through the real binary, kernels on vs off);
#   2. bench_kernels: fused vs composite at gpt2-124m and llama-1b shapes (table + JSON lines);
#   3. with TRAIN_AB=1 and .device-data carried: `bench train` of gpt2-124m and llama-1b with
#      FATHOM_KERNELS=1 and =0 (tokens/s A/B of the whole training step);
#   4. with ADAMW_AB=1: `bench train` of llama-1b (or ADAMW_PRESETS) with FATHOM_FUSED_ADAMW=1 and =0
#      (the fused AdamW kernel against LibTorch's _fused_adamw_, everything else the same).
#   5. with MIXED_AB=1 (or AB_VARS="VAR VAR=VALUE ..."): `bench train` of llama-1b and gpt2-124m with
#      each experimental switch on and off: FATHOM_ADAMW_MIXED (bf16 training's AdamW in one pass that
#      reads bf16 gradients and writes bf16 weights), FATHOM_SDPA_GQA (SDPA's enable_gqa, no K/V
#      repeat) and FATHOM_CE=rows (the row-chunked cross-entropy; FATHOM_CE_ROWS=N its chunk).
# Leaves /tmp/bk/bin/fathom-engine built (ENGINE for tools/gpu/bench_infer.sh in the same call).
# Five files come back in $OUT: summary.txt (tests, failures, bench table, A/B), tests.txt (the test
# log's tail), bench.txt (with the JSON lines; SKIP_BENCH=1 skips the kernel benchmark), build.txt,
# session.log.
# Usage (device tool, kind nvidia-h200): [TRAIN_AB=1] tools/gpu/check_kernels.sh
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${OUT:-$here/out}
mkdir -p "$out"
t0=$(date +%s)
rm -f /tmp/bk-tests.txt /tmp/bk-failures.txt /tmp/bk-train-ab.txt  # a warm machine keeps the last call's
left() { echo $(( ${BUDGET_S:-560} - ($(date +%s) - t0) )); }
log() { echo "[$(( $(date +%s) - t0 ))s] $*" | tee -a "$out/session.log"; }

log "gpu: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tr '\n' ';') commit $(git -C "$here" rev-parse --short HEAD 2>/dev/null)"
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
# cpp-httplib is absent there: the engine is built without `serve` (not needed here).
cmake -S "$here" -B /tmp/bk -G Ninja -DCMAKE_BUILD_TYPE=Release -DFATHOM_GUI=OFF -DFATHOM_TESTS=ON -DFATHOM_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_PREFIX_PATH="$torch_prefix" >/tmp/bk-configure.log 2>&1 \
  || { log "configure failed"; tail -40 /tmp/bk-configure.log | tee "$out/build.txt"; exit 1; }
grep -E "^-- Fathom:" /tmp/bk-configure.log | tee -a "$out/session.log"
targets=(test_kernels test_kernel_reference test_gpu_smoke test_train_gpu bench_kernels fathom-engine)
cmake --build /tmp/bk -j"$(nproc)" --target "${targets[@]}" >/tmp/bk-build.log 2>&1
rc=$?
{ grep -E "error|warning: .*kernels/|ptxas" /tmp/bk-build.log | head -80; echo "-- build exit $rc; last lines:"; tail -15 /tmp/bk-build.log; } >"$out/build.txt"
[ "$rc" = 0 ] || { log "build failed (build.txt)"; grep -E "error" /tmp/bk-build.log | head -30; exit 1; }
log "built"

# ---- 1. tests ---------------------------------------------------------------------------------------
# The kernel tests, then the trainer's (test_train_gpu starts ~10 engine processes) under its own
# limit, so that a slow one cannot cut the other's results line off.
(cd /tmp/bk && timeout 300 ctest --output-on-failure -R '^(test_kernels|test_kernel_reference|test_gpu_smoke)$' >/tmp/bk-tests.txt 2>&1)
log "kernel tests: $(grep -E 'tests passed|tests failed' /tmp/bk-tests.txt | tail -1)"
(cd /tmp/bk && timeout 420 ctest --output-on-failure -R '^test_train_gpu$' >>/tmp/bk-tests.txt 2>&1)
log "train tests: $(grep -E 'tests passed|tests failed' /tmp/bk-tests.txt | tail -1)"
# What failed, with gtest's context lines (file:line, expected/actual, the SCOPED_TRACE).
grep -E -B2 -A6 "Failure|FAILED  \]|exception" /tmp/bk-tests.txt | head -120 >/tmp/bk-failures.txt
grep -E "loss fused|loss first" /tmp/bk-tests.txt | tee -a "$out/session.log"
# The whole test log too (the last 200 KB): an exception's text is on its own line, not near "Failure".
tail -c 200000 /tmp/bk-tests.txt >"$out/tests.txt"

# ---- 2. kernel benchmark ----------------------------------------------------------------------------
if [ -z "${SKIP_BENCH:-}" ]; then
  # BENCH_ARGS: e.g. "--model llama-1b --ops linear_ce --profile /tmp/bkprof" (a profile of each case on stderr)
  # shellcheck disable=SC2086  # BENCH_ARGS holds several arguments
  timeout 240 /tmp/bk/bin/bench_kernels --repeats 15 --iters 10 ${BENCH_ARGS:-} >"$out/bench.txt" 2>&1 || log "bench_kernels exit $?"
else
  echo "(bench_kernels skipped: SKIP_BENCH)" >"$out/bench.txt"
fi
grep -v '^{' "$out/bench.txt" | tee -a "$out/session.log"

# ---- 3. whole training step, kernels on vs off ------------------------------------------------------
if [ -n "${TRAIN_AB:-}" ] && [ -x /tmp/bk/bin/fathom-engine ] && [ -d "$here/.device-data" ]; then
  export FATHOM_DATA_DIR=$here/.device-data FATHOM_WORKSPACE=/tmp/fathom-ws
  : >/tmp/bk-train-ab.txt
  for preset in gpt2-124m llama-1b; do
    for kern in 1 0; do
      [ "$(left)" -gt 60 ] || { log "skip bench train $preset FATHOM_KERNELS=$kern: out of time"; continue; }
      FATHOM_KERNELS=$kern CUDA_VISIBLE_DEVICES=0 timeout 120 /tmp/bk/bin/fathom-engine bench train "$here/resources/presets/$preset.yaml" \
        --steps "${STEPS:-6}" --warmup 2 --set train.gradient_accumulation_steps=1 --run-dir "/tmp/ab-$preset-$kern" \
        >/tmp/ab-$preset-$kern.out 2>/tmp/ab-$preset-$kern.err
      line=$(grep '^{' /tmp/ab-$preset-$kern.out | tail -1)
      [ -n "$line" ] || line="{\"error\": \"$(tail -3 /tmp/ab-$preset-$kern.err | tr '\n"' ' _')\"}"
      echo "{\"preset\":\"$preset\",\"FATHOM_KERNELS\":$kern,\"result\":$line}" >>/tmp/bk-train-ab.txt
      log "bench train $preset FATHOM_KERNELS=$kern: $line"
    done
  done
fi

# ---- 4. ADAMW_AB=1: the fused AdamW kernel vs LibTorch's _fused_adamw_, as one switch of step 5 ----------
ab_vars=${AB_VARS:-${MIXED_AB:+FATHOM_ADAMW_MIXED FATHOM_SDPA_GQA FATHOM_CE=rows}}
if [ -n "${ADAMW_AB:-}" ]; then ab_vars="FATHOM_FUSED_ADAMW $ab_vars"; AB_PRESETS=${AB_PRESETS:-${ADAMW_PRESETS:-llama-1b}}; fi

# ---- 5. whole training step, experimental switches on vs off (AB_VARS; MIXED_AB=1 takes the default
#      list). Each entry is VAR (1 against 0) or VAR=VALUE (VALUE against unset):
#      FATHOM_ADAMW_MIXED: AdamW in one mixed-precision pass; FATHOM_SDPA_GQA: SDPA's enable_gqa;
#      FATHOM_CE=rows: the row-chunked cross-entropy; FATHOM_CE_ROWS: its rows per chunk (with rows). --
if [ -n "$ab_vars" ] && [ -x /tmp/bk/bin/fathom-engine ] && [ -d "$here/.device-data" ]; then
  export FATHOM_DATA_DIR=$here/.device-data FATHOM_WORKSPACE=/tmp/fathom-ws
  for spec in $ab_vars; do
    var=${spec%%=*}
    if [ "$var" = "$spec" ]; then on=1 off=0; else on=${spec#*=} off=; fi
    for preset in ${AB_PRESETS:-llama-1b gpt2-124m}; do
      for val in "$on" "$off"; do
        [ "$(left)" -gt 50 ] || { log "skip bench train $preset $var=$val: out of time"; continue; }
        tag=$(echo "$var-$preset-${val:-unset}" | tr -c 'A-Za-z0-9_.-' '_')
        env "$var=$val" ${AB_EXTRA:-} CUDA_VISIBLE_DEVICES=0 timeout 100 /tmp/bk/bin/fathom-engine bench train "$here/resources/presets/$preset.yaml" \
          --steps "${STEPS:-6}" --warmup 2 --set train.gradient_accumulation_steps=1 --run-dir "/tmp/ab-$tag" \
          >"/tmp/ab-$tag.out" 2>"/tmp/ab-$tag.err"
        log "bench train $preset $var=${val:-(unset)}: $(grep '^{' "/tmp/ab-$tag.out" | tail -1 | head -c 400)$(tail -2 "/tmp/ab-$tag.err" | grep -i error)"
      done
    done
  done
fi

# ---- summary ----------------------------------------------------------------------------------------
{
  echo "== tests"; grep -E "tests passed|tests failed|Passed|Failed|\*\*\*" /tmp/bk-tests.txt | head -20
  [ -s /tmp/bk-failures.txt ] && { echo "== failures"; cat /tmp/bk-failures.txt; }
  echo "== bench_kernels"; grep -v '^{' "$out/bench.txt"
  if [ -s /tmp/bk-train-ab.txt ]; then
    echo "== bench train, FATHOM_KERNELS=1 vs 0"
    python3 - /tmp/bk-train-ab.txt <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {(r["preset"], r["FATHOM_KERNELS"]): r["result"] for r in rows}
for p in ("gpt2-124m", "llama-1b"):
    on, off = by.get((p, 1), {}), by.get((p, 0), {})
    if "tokens_per_s" in on and "tokens_per_s" in off:
        print(f"  {p:<10} kernels {on['tokens_per_s']:10.0f} tok/s  composite {off['tokens_per_s']:10.0f} tok/s  "
              f"ratio {on['tokens_per_s'] / off['tokens_per_s']:.3f}  peak {on.get('peak_allocated_bytes', 0) / 2**30:.1f} vs "
              f"{off.get('peak_allocated_bytes', 0) / 2**30:.1f} GiB  mfu {on.get('mfu', 0):.3f} vs {off.get('mfu', 0):.3f}")
    else:
        print(f"  {p:<10} incomplete: {on or off}")
PY
  fi
} | tee "$out/summary.txt"
log "done"

#!/usr/bin/env bash
# Several of tools/gpu's measurements in one device call, with everything bundled into few files (the
# device tool brings back at most 8 files from $OUT). STAGES picks, in order, from:
#   kernels  tools/gpu/check_kernels.sh (build in /tmp/bk, the gpu tests, bench_kernels)
#   infer    tools/gpu/bench_infer.sh with the engine above (INFER_ENV: its variables, e.g. "SKIP_PPL=1")
#   fp8      tools/gpu/fp8_check.sh
#   compile  tools/gpu/train_vs_compile.sh (PROFILE=1)
#   build    only the engine (Release, CUDA kernels, in /tmp/bk like kernels; ~1 minute on 16 cores)
#   trace    `bench train --profile` of llama-1b (TRACE_PRESET), its Chrome trace gzipped into $OUT, and
#            the GPU's longest idle gaps in it (tools/gpu/trace_gaps.py)
#   engine   the stripped, gzipped engine split into $OUT/engine.gz.NN, to carry into a later call as
#            .device-bin/ (a cold machine then needs no rebuild: ENGINE=.device-bin/fathom-engine)
# Results: $OUT/summary.txt (each stage's console output) and $OUT/results.tgz (every stage's files).
# Usage (device tool, carry .device-data [.device-bin]): STAGES="kernels infer" tools/gpu/all_in_one.sh
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${OUT:?OUT}
res=/tmp/aio; rm -rf "$res"; mkdir -p "$res"
export FATHOM_DATA_DIR=${FATHOM_DATA_DIR:-$here/.device-data} FATHOM_WORKSPACE=${FATHOM_WORKSPACE:-/tmp/fathom-ws}
t0=$(date +%s)
say() { echo "[$(( $(date +%s) - t0 ))s] $*" | tee -a "$out/summary.txt"; }
stage() {  # name command...: runs it, its output into summary.txt
  local name=$1; shift
  say "== $name"
  "$@" 2>&1 | tee -a "$out/summary.txt"
  say "== $name exit ${PIPESTATUS[0]}"
}
# An engine carried from an earlier call (see "engine" above), unless this call builds one.
if [ -z "${ENGINE:-}" ] && [ -f "$here/.device-bin/engine.gz.00" ]; then
  cat "$here"/.device-bin/engine.gz.* | gunzip >/tmp/fathom-engine-carried && chmod +x /tmp/fathom-engine-carried
  ENGINE=/tmp/fathom-engine-carried
fi
for s in ${STAGES:-kernels infer}; do
  case $s in
    kernels) stage kernels env OUT="$res/kernels" bash "$here/tools/gpu/check_kernels.sh"
             ENGINE=/tmp/bk/bin/fathom-engine ;;
    build)   torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
             cmake -S "$here" -B /tmp/bk -G Ninja -DCMAKE_BUILD_TYPE=Release -DFATHOM_GUI=OFF -DFATHOM_TESTS=ON -DFATHOM_CUDA=ON \
               -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_PREFIX_PATH="$torch_prefix" >"$res/configure.log" 2>&1 \
               && cmake --build /tmp/bk -j"$(nproc)" --target fathom-engine >"$res/build.log" 2>&1 \
               || { say "build failed"; grep -E "error" "$res/build.log" | head -30 | tee -a "$out/summary.txt"; break; }
             ENGINE=/tmp/bk/bin/fathom-engine; say "engine built" ;;
    trace)   p=${TRACE_PRESET:-llama-1b}
             CUDA_VISIBLE_DEVICES=0 timeout 150 "${ENGINE:?no engine}" bench train "$here/resources/presets/$p.yaml" --steps 3 --warmup 3 \
               --set train.gradient_accumulation_steps=1 --run-dir "/tmp/aio-$p-prof" --profile "/tmp/aio-$p.trace.json" \
               >/dev/null 2>"$res/$p-profile.log"
             sed -n '/^profile over/,$p' "$res/$p-profile.log" | head -12 | tee -a "$out/summary.txt"
             python3 "$here/tools/gpu/trace_gaps.py" "/tmp/aio-$p.trace.json" 2>&1 | tee "$res/$p-gaps.txt" | tee -a "$out/summary.txt"
             gzip -c "/tmp/aio-$p.trace.json" >"$out/$p.trace.json.gz"; say "trace: $(du -h "$out/$p.trace.json.gz" | cut -f1)" ;;
    infer)   stage infer env ${INFER_ENV:-} ENGINE="${ENGINE:?no engine}" bash "$here/tools/gpu/bench_infer.sh" "$res/infer" ;;
    fp8)     stage fp8 env ${FP8_ENV:-} ENGINE="${ENGINE:?no engine}" bash "$here/tools/gpu/fp8_check.sh" "$res/fp8" ;;
    compile) stage compile env PROFILE=1 ${COMPILE_ENV:-} ENGINE="${ENGINE:?no engine}" bash "$here/tools/gpu/train_vs_compile.sh" "$res/compile" ;;
    engine)  strip -o /tmp/fathom-engine-stripped "${ENGINE:?no engine}" && gzip -1 -c /tmp/fathom-engine-stripped \
               | split -b 15M -d -a 2 - "$out/engine.gz."
             say "engine: $(ls -la /tmp/fathom-engine-stripped | awk '{print $5}') bytes stripped, parts: $(ls "$out" | grep -c engine.gz)" ;;
    *)       say "unknown stage $s" ;;
  esac
done
tar czf "$out/results.tgz" -C "$res" . && say "results.tgz: $(du -h "$out/results.tgz" | cut -f1)"

#!/usr/bin/env bash
# On the GPU machine: issue #7's inference figures in one call. llama-1b (random weights, bf16)
# saved by transformers; Hugging Face `generate` (batch 1 and static batches 8/32/64) and
# `fathom-engine bench infer` (batch 1 and continuous batching at 1/8/32/64 concurrent requests, for
# none / int8 / dynamic_int8) on the same weights; then the quantisation's perplexity cost on a
# `demo` model trained for a few hundred steps on the GPU.
# Usage: [MODES=none,int8] [CONC=1] [SKIP_HF=1] [SKIP_PPL=1] [TTFT2K=1] [ENGINE=path] tools/gpu/bench_infer.sh OUT_DIR
#        (carry .device-data)
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${1:?out dir}; mkdir -p "$out"
export FATHOM_DATA_DIR=$here/.device-data FATHOM_WORKSPACE=/tmp/fathom-ws
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
# The same build as tools/gpu/check_dist.sh (/tmp/bd, nccl.h from the system or the pip wheel), so one
# warm machine builds once for both.
nccl_inc=$(python3 -c '
import os, glob
for d in ["/usr/include", "/usr/local/include", "/usr/local/cuda/include"]:
    if os.path.exists(os.path.join(d, "nccl.h")): print(d); raise SystemExit
try:
    import nvidia.nccl as n
    for p in n.__path__:
        if os.path.exists(os.path.join(p, "include", "nccl.h")): print(os.path.join(p, "include")); raise SystemExit
except ImportError:
    pass
')
cxxflags=""; [ -n "$nccl_inc" ] && cxxflags="-I$nccl_inc"
# ENGINE=path: use an engine built already (e.g. by tools/gpu/check_kernels.sh in the same call).
if [ -n "${ENGINE:-}" ] && [ -x "$ENGINE" ]; then
  eng=$ENGINE
else
  cmake -S "$here" -B /tmp/bd -G Ninja -DCMAKE_BUILD_TYPE=Release -DFATHOM_GUI=OFF -DFATHOM_TESTS=OFF -DFATHOM_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_PREFIX_PATH="$torch_prefix" -DCMAKE_CXX_FLAGS="$cxxflags" > "$out/configure.log" 2>&1
  cmake --build /tmp/bd -j"$(nproc)" --target fathom-engine > "$out/build.log" 2>&1 || { grep -E "error" "$out/build.log" | head -30; exit 1; }
  eng=/tmp/bd/bin/fathom-engine
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
tok=$FATHOM_DATA_DIR/tokenizers/qwen3/tokenizer.json
python3 "$here/tools/gpu/hf_generate_bench.py" --tokenizer "$tok" --make-only > "$out/hf-make.log" 2>&1 || { tail -20 "$out/hf-make.log"; exit 1; }
echo "== transformers generate (llama-1b bf16)"
[ -n "${SKIP_HF:-}" ] || CUDA_VISIBLE_DEVICES=0 timeout 240 python3 "$here/tools/gpu/hf_generate_bench.py" --tokenizer "$tok" > "$out/hf.json" 2> "$out/hf.log"
echo "HF: $(tail -1 "$out/hf.json")"; [ -s "$out/hf.json" ] || tail -20 "$out/hf.log"; rm -f "$out/hf-make.log"
echo "== fathom bench infer (llama-1b bf16)"
CUDA_VISIBLE_DEVICES=0 timeout 300 $eng bench infer /tmp/llama1b-hf --device cuda --precision bf16 \
  --quantize ${MODES:-none,int8,dynamic_int8} --concurrency ${CONC:-1,8,32,64} --prompt-tokens 128 --new-tokens 128 --json > "$out/fathom.json" 2> "$out/fathom.log"
grep -E "^\[" "$out/fathom.log"; [ -s "$out/fathom.json" ] || tail -20 "$out/fathom.log"; echo "HF: $(tail -1 "$out/hf.json")"
if [ -n "${GRAPHS_AB:-}" ]; then
  echo "== the same, batch 1, CUDA graphs off (FATHOM_CUDA_GRAPHS=0)"
  FATHOM_CUDA_GRAPHS=0 CUDA_VISIBLE_DEVICES=0 timeout 120 $eng bench infer /tmp/llama1b-hf --device cuda --precision bf16 \
    --quantize none --concurrency 1 --prompt-tokens 128 --new-tokens 128 --json > "$out/fathom-nographs.json" 2> "$out/fathom-nographs.log"
  grep -E "^\[" "$out/fathom-nographs.log"
fi
if [ -n "${TTFT2K:-}" ]; then
  echo "== time to first token, 2,032-token prompt (+15 new: bench infer keeps prompt + new + 1 within the 2,048 context; batch 1, bf16 and int8)"
  CUDA_VISIBLE_DEVICES=0 timeout 120 $eng bench infer /tmp/llama1b-hf --device cuda --precision bf16 \
    --quantize none,int8 --concurrency 1 --prompt-tokens 2032 --new-tokens 15 --json > "$out/fathom-2k.json" 2> "$out/fathom-2k.log"
  grep -E "^\[" "$out/fathom-2k.log"
fi
if [ -z "${SKIP_PPL:-}" ]; then
  echo "== perplexity cost of quantisation (demo preset trained 400 steps on the GPU)"
  CUDA_VISIBLE_DEVICES=0 timeout 200 $eng train "$here/resources/presets/demo.yaml" --set run.device=cuda \
    --set train.max_steps=400 --set checkpoint.save_every_steps=400 --set train.eval_interval=0 --set train.sample_interval=0 \
    --run-dir /tmp/demo-gpu --no-stdout > "$out/demo-train.log" 2>&1 || tail -20 "$out/demo-train.log"
  CUDA_VISIBLE_DEVICES=0 timeout 200 $eng bench infer /tmp/demo-gpu/checkpoints/step-400 --device cuda --precision bf16 \
    --quantize none,int8,dynamic_int8 --concurrency 1,32 --eval-shard "$(find /tmp/fathom-ws -name val.bin | head -1)" --eval-tokens 65536 --json \
    > "$out/demo-ppl.json" 2> "$out/demo-ppl.log"
  grep -E "^\[" "$out/demo-ppl.log"
fi

#!/usr/bin/env bash
# On the GPU machine: LoRA fine-tuning throughput and peak memory of llama-1b (r 16, alpha 32, all
# attention and MLP projections, micro-batch 4 x 2048, bf16), Fathom vs PEFT, in one call.
# Usage: tools/gpu/bench_lora.sh OUT_DIR
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${1:?out dir}; mkdir -p "$out"
export FATHOM_DATA_DIR=$here/.device-data FATHOM_WORKSPACE=/tmp/fathom-ws
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
cmake -S "$here" -B /tmp/bg -G Ninja -DCMAKE_BUILD_TYPE=Release -DFATHOM_GUI=OFF -DFATHOM_TESTS=OFF -DFATHOM_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_PREFIX_PATH="$torch_prefix" > "$out/configure.log" 2>&1
cmake --build /tmp/bg -j16 --target fathom-engine > "$out/build.log" 2>&1 || { tail -30 "$out/build.log"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
targets="[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]"
for rep in 1 2; do
  timeout 200 /tmp/bg/bin/fathom-engine bench train "$here/resources/presets/llama-1b.yaml" --steps 20 --warmup 3 \
    --set train.gradient_accumulation_steps=1 --set lora.enabled=true --set lora.r=16 --set lora.lora_alpha=32 \
    --set lora.dropout=0 --set "lora.target_modules=$targets" --run-dir /tmp/bench-lora > "$out/fathom-$rep.log" 2>&1
  echo "fathom lora llama-1b #$rep: $(grep '^{' "$out/fathom-$rep.log" | tail -1)"
  timeout 200 python3 "$here/tests/bench/peft_lora_bench.py" --steps 20 > "$out/peft-$rep.log" 2>&1
  echo "peft lora llama-1b #$rep: $(tail -1 "$out/peft-$rep.log")"
done

#!/usr/bin/env bash
# On the GPU machine (device tool): build the engine against PyTorch's CUDA LibTorch, run the gpu
# tests (incl. DeepSeek MLA+MoE and LoRA int8 on CUDA), the MoE/LoRA unit tests, train
# deepseek-moe-tiny on CUDA in bf16, and check LoRA adapters against the real PEFT both ways.
# Usage: tools/gpu/check_deepseek_lora.sh OUT_DIR   (logs under OUT_DIR)
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${1:?out dir}
mkdir -p "$out"
b=$here/build-gpu
( bash "$here/packaging/build-engine-gpu.sh" "$b" ) > "$out/build.log" 2>&1; echo "build+gpu tests rc=$?" | tee -a "$out/summary.txt"
tail -25 "$out/build.log" >> "$out/summary.txt"
for t in test_moe_mla test_lora test_model; do "$b/bin/$t" > "$out/$t.log" 2>&1; echo "$t rc=$?" | tee -a "$out/summary.txt"; done
eng=$b/bin/fathom-engine
data=$here/.device-data
export FATHOM_DATA_DIR=$data
# deepseek-moe-tiny on CUDA, bf16
$eng train "$here/resources/presets/deepseek-moe-tiny.yaml" --run-dir "$out/moe" --no-stdout \
  --set run.device=cuda --set train.precision=bf16 --set train.max_steps=200 --set train.log_interval=50 \
  --set "data.train=[$here/tests/fixtures/corpus]" > "$out/moe.log" 2>&1; echo "moe bf16 rc=$?" | tee -a "$out/summary.txt"
grep -o '"step":[0-9]*\|"loss":[0-9.]*\|"tokens_per_s":[0-9.]*\|"moe.load_imbalance":[0-9.]*' "$out/moe/events.jsonl" | paste -sd' ' | tail -c 800 >> "$out/summary.txt"
echo >> "$out/summary.txt"
# PEFT interop on the transformers-made tiny llama
base=$here/tests/fixtures/hf/llama
p=$out/peft; mkdir -p "$p"
python3 "$here/tools/peft/check_peft.py" make "$base" "$p" >> "$out/summary.txt" 2>&1
$eng lora merge "$p/peft_adapter" --base "$base" --to hf --out "$p/merged_from_peft" > "$p/merge1.log" 2>&1; echo "merge peft rc=$?" >> "$out/summary.txt"
cat > "$p/ft.yaml" <<YAML
run: {name: peft-ft, device: cuda, workspace: $p/ws}
model: {max_seq_len: 128}
lora: {enabled: true, base: $base, r: 8, lora_alpha: 16, dropout: 0.0, target_modules: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]}
data: {task: instruct, train: [$here/tests/fixtures/instruct/tiny.jsonl], seq_len: 128, validation_fraction: 0.1}
train: {micro_batch_size: 4, max_steps: 30, log_interval: 10, eval_interval: 0, precision: bf16}
optimizer: {lr: 1.0e-2, warmup_steps: 3}
checkpoint: {save_every_steps: 30, save_interval: 0}
YAML
$eng finetune "$p/ft.yaml" --run-dir "$p/ft" --no-stdout > "$p/ft.log" 2>&1; echo "finetune cuda bf16 rc=$?" | tee -a "$out/summary.txt"
tail -4 "$p/ft.log" >> "$out/summary.txt"
cp -r "$p/ft/checkpoints/step-30" "$p/fathom_adapter"
$eng lora merge "$p/fathom_adapter" --base "$base" --to hf --out "$p/merged_from_fathom" > "$p/merge2.log" 2>&1; echo "merge fathom rc=$?" >> "$out/summary.txt"
python3 "$here/tools/peft/check_peft.py" compare "$base" "$p" >> "$out/summary.txt" 2>&1; echo "peft compare rc=$?" | tee -a "$out/summary.txt"
cat "$p/merge1.log" "$p/merge2.log" | tail -6 >> "$out/summary.txt"
rm -rf "$p/ws" "$p/ft" "$out/moe/checkpoints"
tar czf "$out/logs.tgz" -C "$out" --exclude logs.tgz . 2>/dev/null

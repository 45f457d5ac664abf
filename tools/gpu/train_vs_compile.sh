#!/usr/bin/env bash
# Issue #10's training targets on one H200, one device call: `fathom-engine bench train` (fused kernels
# on) beside the same model in PyTorch with torch.compile (tests/bench/torch_reference_train.py), for
# gpt2-124m (T=1024) and llama-1b (T=2048), bf16, same batch, same call. Prints one line per model with
# tokens/s, MFU and the ratio. PROFILE=1 adds a profile of Fathom's step (`bench train --profile`: GPU
# time by kernel category and the top kernels) to OUT_DIR/<model>-profile.txt.
# Usage (device tool, nvidia-h200): [PROFILE=1] ENGINE=/path/to/fathom-engine tools/gpu/train_vs_compile.sh OUT_DIR
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${1:?out dir}; mkdir -p "$out"
eng=${ENGINE:?ENGINE=path to a CUDA fathom-engine}
export FATHOM_DATA_DIR=${FATHOM_DATA_DIR:-$here/.device-data} FATHOM_WORKSPACE=/tmp/fathom-ws
steps=${STEPS:-10}
one() {  # name preset torch-args...
  local name=$1 preset=$2; shift 2
  CUDA_VISIBLE_DEVICES=0 timeout 150 "$eng" bench train "$here/resources/presets/$preset.yaml" --steps "$steps" --warmup 3 \
    --set train.gradient_accumulation_steps=1 --run-dir "/tmp/tvc-$name" >"$out/$name-fathom.json" 2>"$out/$name-fathom.log"
  CUDA_VISIBLE_DEVICES=0 timeout 240 python3 "$here/tests/bench/torch_reference_train.py" "$@" --steps "$steps" --warmup 3 --compile \
    >"$out/$name-compile.json" 2>"$out/$name-compile.log"
  python3 - "$name" "$out/$name-fathom.json" "$out/$name-compile.json" <<'PY'
import json, sys
def last(p):
    try:
        return [json.loads(l) for l in open(p) if l.startswith("{")][-1]
    except (OSError, IndexError):
        return None
name, f, c = sys.argv[1], last(sys.argv[2]), last(sys.argv[3])
if not f or not c:
    print(f"{name}: missing result (fathom {bool(f)}, torch.compile {bool(c)})")
else:
    print(f"{name}: fathom {f['tokens_per_s']:.0f} tok/s (MFU {f['mfu']:.3f}, peak {f.get('peak_allocated_bytes', 0) / 2**30:.1f} GiB)  "
          f"torch.compile {c['tokens_per_s']:.0f} tok/s (MFU {c['mfu']:.3f}, peak {c['peak_allocated_bytes'] / 2**30:.1f} GiB)  "
          f"ratio {f['tokens_per_s'] / c['tokens_per_s']:.2f}")
PY
  if [ -n "${PROFILE:-}" ]; then  # where Fathom's step goes: kernels by category and the top ones (bench --profile)
    CUDA_VISIBLE_DEVICES=0 timeout 150 "$eng" bench train "$here/resources/presets/$preset.yaml" --steps 3 --warmup 3 \
      --set train.gradient_accumulation_steps=1 --run-dir "/tmp/tvc-$name-prof" --profile "/tmp/tvc-$name.trace.json" \
      >/dev/null 2>"/tmp/tvc-$name-profile.log"
    sed -n '/^profile over/,$p' "/tmp/tvc-$name-profile.log" | head -40 >"$out/$name-profile.txt"
    cat "$out/$name-profile.txt"
  fi
}
one gpt2-124m gpt2-124m --d-model 768 --n-layers 12 --n-heads 12 --n-kv-heads 12 --d-ff 2048 --vocab 50304 --seq 1024 --batch 16 --tie 1
one llama-1b llama-1b --d-model 2048 --n-layers 16 --n-heads 32 --n-kv-heads 8 --d-ff 8192 --vocab 151936 --seq 2048 --batch 4 --tie 1 --rope-theta 500000

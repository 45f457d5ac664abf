#!/usr/bin/env bash
# On nvidia-h200-x2, one device call (issue #8): build the engine with NCCL, then
#   1. bench comm (NCCL, bf16) beside torch.distributed all-reduce (torchrun), same sizes, same call;
#   2. equivalence over NCCL: 2 GPUs x micro 8 vs 1 GPU x micro 16 (bf16, and fp32), ZeRO-1/2 vs plain DP;
#   3. llama-1b bench train: tokens/s on 1 GPU and on 2 (ZeRO 0/1/2) and peak memory per rank;
# and prints a summary. Each part is skipped when the time left (BUDGET_S, default 540 s) is short.
# Usage (device tool, kind nvidia-h200-x2, carry [".device-data"]): tools/gpu/check_dist.sh
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${OUT:-$here/out}
mkdir -p "$out"
export FATHOM_DATA_DIR=$here/.device-data FATHOM_WORKSPACE=/tmp/fathom-ws OMP_NUM_THREADS=4
t0=$(date +%s)
left() { echo $(( ${BUDGET_S:-540} - ($(date +%s) - t0) )); }
cap() { local l=$(( $(left) - 15 )); [ "$l" -lt "$1" ] && echo "$l" || echo "$1"; }  # a timeout that fits the budget
log() { echo "[$(( $(date +%s) - t0 ))s] $*" | tee -a "$out/session.log"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$out/gpu.txt" 2>&1
log "gpus: $(tr '\n' ';' <"$out/gpu.txt")  NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-unset}"
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
# ProcessGroupNCCL's header needs nccl.h: the system one, or the pip wheel's (nvidia-nccl-*).
nccl_inc=$(python3 - <<'EOF'
import os, glob
for d in ["/usr/include", "/usr/local/include", "/usr/local/cuda/include"]:
    if os.path.exists(os.path.join(d, "nccl.h")): print(d); raise SystemExit
try:
    import nvidia.nccl as n
    for p in n.__path__:
        if os.path.exists(os.path.join(p, "include", "nccl.h")): print(os.path.join(p, "include")); raise SystemExit
except ImportError:
    pass
import sys
hits = [h for p in sys.path if p for h in glob.glob(os.path.join(p, "nvidia", "nccl*", "include", "nccl.h"))]
hits += glob.glob("/usr/lib/python3*/**/nccl.h", recursive=True) + glob.glob("/usr/local/lib/python3*/**/nccl.h", recursive=True)
print(os.path.dirname(hits[0]) if hits else "")
EOF
)
log "nccl.h in: ${nccl_inc:-NOT FOUND (the engine will have no NCCL)}"
cxxflags=""; [ -n "$nccl_inc" ] && cxxflags="-I$nccl_inc"
cmake -S "$here" -B /tmp/bd -G Ninja -DCMAKE_BUILD_TYPE=Release -DFATHOM_GUI=OFF -DFATHOM_TESTS=OFF -DFATHOM_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_PREFIX_PATH="$torch_prefix" -DCMAKE_CXX_FLAGS="$cxxflags" >"$out/configure.log" 2>&1 \
  || { log "configure failed"; tail -30 "$out/configure.log"; exit 1; }
cmake --build /tmp/bd -j"$(nproc)" --target fathom-engine >"$out/build.log" 2>&1 \
  || { log "build failed"; grep -E 'error' "$out/build.log" | head -40; exit 1; }
eng=/tmp/bd/bin/fathom-engine
log "engine built: $($eng --version)"

# ranks N NAME TIMEOUT ARGS...: N engine ranks on GPUs 0..N-1, torchrun's environment; returns rank 0's code.
ranks() {
  local n=$1 name=$2 tmo=$3; shift 3
  local port=$(( 20000 + RANDOM % 20000 )) pids=() r
  for r in $(seq 0 $((n - 1))); do
    MASTER_ADDR=127.0.0.1 MASTER_PORT=$port RANK=$r WORLD_SIZE=$n LOCAL_RANK=$r LOCAL_WORLD_SIZE=$n \
      timeout "$tmo" "$eng" "$@" >"$out/$name.rank$r.out" 2>"$out/$name.rank$r.err" &
    pids+=($!)
  done
  local rc=0 code
  for r in "${!pids[@]}"; do wait "${pids[$r]}"; code=$?; [ "$r" = 0 ] && rc=$code; done
  [ "$rc" = 0 ] || { log "$name: rank 0 exit $rc"; tail -5 "$out/$name.rank0.err" | sed 's/^/    /'; }
  return "$rc"
}

PARTS=${PARTS:-comm,eq,llama}   # which parts to run (comma-separated)
# PRECS: precisions of the equivalence part ("bf16 fp32").
# ---- 1. collectives: fathom bench comm vs torch.distributed, same sizes ---------------------------
if [[ ,$PARTS, == *,comm,* ]]; then
sizes=1M,16M,64M,256M,1G
ranks 2 comm "$(cap 120)" bench comm --sizes "$sizes" --dtype bf16 --iters 20 --warmup 5 --json
cp "$out/comm.rank0.out" "$out/comm.json" 2>/dev/null
timeout 120 torchrun --nproc_per_node 2 --master_port $(( 40000 + RANDOM % 10000 )) "$here/tools/gpu/torch_allreduce_bench.py" \
  --sizes "$sizes" --dtype bf16 >"$out/torch-comm.json" 2>"$out/torch-comm.log" || { log "torch all-reduce failed"; tail -5 "$out/torch-comm.log"; }
log "comm done"
fi

# ---- 2. equivalence over NCCL ---------------------------------------------------------------------
# The same global batch (32 sequences a step) split four ways, deterministic kernels on:
#   1gpu-16x2  1 GPU, micro 16 x accumulation 2          (the single-process reference)
#   1gpu-8x4   1 GPU, micro 8 x accumulation 4           (the same partial gradients as 2 ranks x 8 x 2)
#   1gpu-8x4b  the same again                            (run-to-run: must be bit-identical)
#   2gpu-zZ    2 GPUs, micro 8 x accumulation 2, ZeRO Z  (Z = 0, 1, 2)
# Floating-point sums depend on their order. "1gpu-16x2 vs 1gpu-8x4" (one process, only the grouping of
# the sum differs) is the floor of what reordering the same arithmetic does over the run; data
# parallelism passes when its difference from one GPU stays within twice that floor (and within fixed
# bounds for the first steps, before the differences compound).
eq() {  # NAME PREC N_GPUS MICRO ACCUM ZERO [--set ...]
  local name=$1 prec=$2 n=$3 micro=$4 accum=$5 z=$6; shift 6
  local args=(train /tmp/eq.yaml --run-dir /tmp/eq-$prec-$name --no-stdout --set train.precision=$prec
              --set train.micro_batch_size=$micro --set train.gradient_accumulation_steps=$accum --set optimizer.zero.stage=$z "$@")
  if [ "$n" = 1 ]; then
    CUDA_VISIBLE_DEVICES=0 timeout "$(cap 120)" $eng "${args[@]}" >"$out/eq-$prec-$name.log" 2>&1 \
      || { log "eq $prec $name failed"; tail -5 "$out/eq-$prec-$name.log"; }
  else
    ranks 2 "eq-$prec-$name" "$(cap 120)" "${args[@]}"
  fi
}
cmp_runs() { python3 "$here/tools/gpu/compare_dist.py" "$1" "$2" "$3" 30 1 1 >>"$out/equivalence.jsonl" 2>>"$out/compare.log"; }
if [[ ,$PARTS, == *,eq,* ]]; then
  cat >/tmp/eq.yaml <<'EOF'
extends: debug-tiny
run: {name: eq, seed: 5, device: cuda}
model: {d_model: 256, n_layers: 4, n_heads: 8, n_kv_heads: 4, max_seq_len: 128}
data: {seq_len: 128}
train: {micro_batch_size: 16, gradient_accumulation_steps: 2, max_steps: 30, log_interval: 1, eval_interval: 0, sample_interval: 0, precision: bf16, grad_clip: 1.0, deterministic: true}
checkpoint: {save_every_steps: 0, save_interval: 0}
distributed: {backend: nccl, timeout_s: 120}
EOF
  : >"$out/equivalence.jsonl"
  for prec in ${PRECS:-bf16 fp32}; do
    [ "$(left)" -gt 120 ] || { log "skip equivalence $prec: out of time"; continue; }
    eq 1gpu-16x2 $prec 1 16 2 0; eq 1gpu-8x4 $prec 1 8 4 0; eq 1gpu-8x4b $prec 1 8 4 0
    for z in 0 1 2; do eq 2gpu-z$z $prec 2 8 2 $z; done
    # Without clipping, ZeRO's only difference from plain DP (its global norm summed from shards)
    # goes: same all-reduce (or, for 2 ranks, the same single addition in reduce-scatter), the same
    # element-wise AdamW, the same rounding to bf16, so the runs must be bit-identical.
    for z in 0 1 2; do eq 2gpu-z$z-noclip $prec 2 8 2 $z --set train.grad_clip=0; done
    r=/tmp/eq-$prec
    cmp_runs "$prec floor: 1 GPU 16x2 vs 8x4" $r-1gpu-16x2 $r-1gpu-8x4
    cmp_runs "$prec run-to-run: 1 GPU 8x4" $r-1gpu-8x4 $r-1gpu-8x4b
    cmp_runs "$prec 2 GPUs vs 1 GPU 8x4" $r-1gpu-8x4 $r-2gpu-z0
    cmp_runs "$prec 2 GPUs vs 1 GPU 16x2" $r-1gpu-16x2 $r-2gpu-z0
    cmp_runs "$prec ZeRO-1 vs plain DP" $r-2gpu-z0 $r-2gpu-z1
    cmp_runs "$prec ZeRO-2 vs plain DP" $r-2gpu-z0 $r-2gpu-z2
    cmp_runs "$prec ZeRO-1 vs DP, no clipping" $r-2gpu-z0-noclip $r-2gpu-z1-noclip
    cmp_runs "$prec ZeRO-2 vs DP, no clipping" $r-2gpu-z0-noclip $r-2gpu-z2-noclip
  done
  log "equivalence done"
fi

# ---- 3. llama-1b: scaling and memory per rank -----------------------------------------------------
preset=$here/resources/presets/llama-1b.yaml
bargs=(--steps "${STEPS:-6}" --warmup 2 --set train.gradient_accumulation_steps=1 --set distributed.timeout_s=200)
if [[ ,$PARTS, == *,llama,* ]] && [ "$(left)" -gt 100 ]; then
  CUDA_VISIBLE_DEVICES=0 timeout "$(cap 180)" $eng bench train "$preset" "${bargs[@]}" --run-dir /tmp/l1 >"$out/llama-1gpu.out" 2>"$out/llama-1gpu.err"
  log "llama-1b 1 GPU: $(grep '^{' "$out/llama-1gpu.out" | tail -1)"
fi
for z in 0 1 2; do
  [[ ,$PARTS, == *,llama,* ]] || continue
  [ "$(left)" -gt 80 ] || { log "skip llama-1b 2 GPUs ZeRO-$z: out of time"; continue; }
  ranks 2 llama-2gpu-z$z "$(cap 180)" bench train "$preset" "${bargs[@]}" --set optimizer.zero.stage=$z --run-dir /tmp/l2-z$z
  log "llama-1b 2 GPUs ZeRO-$z: $(cat "$out/llama-2gpu-z$z".rank*.out | grep '^{' | tr '\n' ' ')"
done

# ---- summary --------------------------------------------------------------------------------------
python3 - "$out" <<'EOF' | tee "$out/summary.txt"
import glob, json, os, sys
out = sys.argv[1]
def jl(path):
    try:
        return [json.loads(l) for l in open(path) if l.startswith("{")]
    except OSError:
        return []
print("== bench comm (bf16, 2 GPUs) vs torch.distributed all_reduce")
f = jl(f"{out}/comm.json"); t = jl(f"{out}/torch-comm.json")
tr = {r["bytes"]: r for r in (t[0]["results"] if t else [])}
for r in (f[0]["results"] if f else []):
    ref = tr.get(r["bytes"]) if r["op"] == "all_reduce" else None
    extra = f"  torch {ref['busbw_gbps']:.1f} GB/s  ratio {r['busbw_gbps'] / ref['busbw_gbps']:.2f}" if ref else ""
    print(f"  {r['op']:<15} {r['bytes'] / 2**20:>8.0f} MiB  busbw {r['busbw_gbps']:8.1f} GB/s{extra}")
print("== equivalence over NCCL (max |diff| of the loss curve, first 5 steps, final step; final weights)")
eqs = {e["name"]: e for e in jl(f"{out}/equivalence.jsonl")}
for e in eqs.values():
    print(f"  {e['name']:<32} loss {e['loss_max_abs']:.2e} (rel {e['loss_max_rel']:.1e}; first 5 {e['loss_first5_max_rel']:.1e}; "
          f"final {e['loss_final_rel']:.1e})  weights {e['weights_max_abs']:.2e}")
for prec in ("bf16", "fp32"):
    floor = eqs.get(f"{prec} floor: 1 GPU 16x2 vs 8x4")
    if not floor:
        continue
    first5 = 1e-4 if prec == "bf16" else 1e-5   # relative, before differences compound
    rtr = eqs.get(f"{prec} run-to-run: 1 GPU 8x4")
    if rtr:
        print(f"  {prec} deterministic (bit-identical reruns): {'yes' if rtr['loss_max_abs'] == 0 and rtr['weights_max_abs'] == 0 else 'NO'}")
    for name in (f"{prec} ZeRO-1 vs DP, no clipping", f"{prec} ZeRO-2 vs DP, no clipping"):
        e = eqs.get(name)
        if e:
            print(f"  {name:<32} bit-identical: {'yes' if e['loss_max_abs'] == 0 and e['weights_max_abs'] == 0 else 'NO'}")
    for name in (f"{prec} 2 GPUs vs 1 GPU 8x4", f"{prec} 2 GPUs vs 1 GPU 16x2", f"{prec} ZeRO-1 vs plain DP", f"{prec} ZeRO-2 vs plain DP"):
        e = eqs.get(name)
        if not e:
            continue
        lt = 2 * floor["loss_max_abs"] + 1e-6
        wt = 2 * floor["weights_max_abs"] + 1e-6
        ok = e["steps"] == floor["steps"] and e["loss_max_abs"] <= lt and e["weights_max_abs"] <= wt and e["loss_first5_max_rel"] <= first5
        print(f"  {name:<32} within 2x floor (loss <= {lt:.2e}, weights <= {wt:.2e}), first 5 steps <= {first5:.0e}: "
              f"{'ok' if ok else 'OUT OF TOLERANCE'}")
print("== llama-1b bench train (micro 4 x 2048 per rank, bf16)")
one = jl(f"{out}/llama-1gpu.out")
base = one[-1]["tokens_per_s"] if one else None
if one:
    print(f"  1 GPU           {base:10.0f} tok/s  peak {one[-1].get('peak_allocated_bytes', 0) / 2**30:.1f} GiB  MFU {one[-1]['mfu']:.3f}")
for z in (0, 1, 2):
    rs = sorted(sum((jl(p) for p in glob.glob(f"{out}/llama-2gpu-z{z}.rank*.out")), []), key=lambda r: r.get("rank", 0))
    if not rs:
        continue
    tps = rs[0]["tokens_per_s"]
    eff = f"  scaling {tps / (2 * base):.2f}" if base else ""
    mem = "  ".join(f"rank{r.get('rank', 0)} {r.get('peak_allocated_bytes', 0) / 2**30:.1f} GiB" for r in rs)
    print(f"  2 GPUs ZeRO-{z}  {tps:10.0f} tok/s{eff}  peak {mem}")
EOF
log "done"

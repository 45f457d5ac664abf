#!/usr/bin/env python3
"""Reference for `fathom-engine bench comm`: torch.distributed (NCCL) all-reduce bus bandwidth over
the same sizes, nccl-tests conventions (busbw = bytes/time x 2(n-1)/n). Run under torchrun; rank 0
prints one JSON object. Usage: torchrun --nproc_per_node 2 torch_allreduce_bench.py --sizes 1M,16M,256M"""
import argparse, json, os, time
import torch
import torch.distributed as dist

p = argparse.ArgumentParser()
p.add_argument("--sizes", default="1M,16M,256M,1G")
p.add_argument("--iters", type=int, default=20)
p.add_argument("--warmup", type=int, default=5)
p.add_argument("--dtype", default="bf16")
a = p.parse_args()
units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
sizes = [int(float(s[:-1]) * units[s[-1]]) if s[-1] in units else int(s) for s in a.sizes.split(",")]
local = int(os.environ.get("LOCAL_RANK", 0))
torch.cuda.set_device(local)
dist.init_process_group("nccl")
n = dist.get_world_size()
dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
res = []
for size in sizes:
    x = torch.ones(size // dtype.itemsize, dtype=dtype, device="cuda")
    for _ in range(a.warmup):
        dist.all_reduce(x)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(a.iters):
        dist.all_reduce(x)
    torch.cuda.synchronize()
    t = (time.perf_counter() - t0) / a.iters
    algbw = size / t / 1e9
    res.append({"op": "all_reduce", "bytes": size, "time_us": t * 1e6, "algbw_gbps": algbw, "busbw_gbps": algbw * 2 * (n - 1) / n})
if dist.get_rank() == 0:
    print(json.dumps({"world_size": n, "torch": torch.__version__, "results": res}))
dist.destroy_process_group()

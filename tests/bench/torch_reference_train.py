#!/usr/bin/env python3
"""PyTorch reference for `fathom-engine bench train`: the same LLaMA-style model (RMSNorm, RoPE,
GQA via SDPA, SwiGLU, tied or untied head) trained with AdamW under bf16 autocast, in eager mode
or with torch.compile. Prints one JSON line: tokens/s, MFU (6N + 12·L·d·T convention, peak given),
peak allocated memory. Run on the GPU machine with PyTorch 2.x, or with --device cpu (fp32, no
autocast, foreach AdamW; works with Debian's python3-torch 1.13, which has no SDPA) for the CPU
side-by-side of issue #10.
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight).to(x.dtype)


def rope_tables(T, hd, theta, device):
    inv = theta ** (-torch.arange(0, hd, 2, dtype=torch.float64, device=device) / hd)
    ang = torch.outer(torch.arange(T, dtype=torch.float64, device=device), inv)
    emb = torch.cat([ang, ang], -1)
    return emb.cos().float(), emb.sin().float()


def rope(x, cos, sin):
    hd = x.shape[-1]
    x1, x2 = x[..., : hd // 2], x[..., hd // 2 :]
    return x * cos.to(x.dtype) + torch.cat([-x2, x1], -1) * sin.to(x.dtype)


class Block(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.H, self.Hkv, self.hd = a.n_heads, a.n_kv_heads, a.d_model // a.n_heads
        self.q = nn.Linear(a.d_model, self.H * self.hd, bias=False)
        self.k = nn.Linear(a.d_model, self.Hkv * self.hd, bias=False)
        self.v = nn.Linear(a.d_model, self.Hkv * self.hd, bias=False)
        self.o = nn.Linear(self.H * self.hd, a.d_model, bias=False)
        self.gate = nn.Linear(a.d_model, a.d_ff, bias=False)
        self.up = nn.Linear(a.d_model, a.d_ff, bias=False)
        self.down = nn.Linear(a.d_ff, a.d_model, bias=False)
        self.n1, self.n2 = RMSNorm(a.d_model, 1e-5), RMSNorm(a.d_model, 1e-5)

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        h = self.n1(x)
        q = self.q(h).view(B, T, self.H, self.hd).transpose(1, 2)
        k = self.k(h).view(B, T, self.Hkv, self.hd).transpose(1, 2)
        v = self.v(h).view(B, T, self.Hkv, self.hd).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        rep = self.H // self.Hkv
        if rep > 1:
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        if hasattr(F, "scaled_dot_product_attention"):
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # torch 1.13
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.hd))
            att = att.masked_fill(torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1), float("-inf"))
            y = torch.softmax(att.float(), -1).to(q.dtype) @ v
        x = x + self.o(y.transpose(1, 2).reshape(B, T, C))
        h = self.n2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Model(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.emb = nn.Embedding(a.vocab, a.d_model)
        self.blocks = nn.ModuleList([Block(a) for _ in range(a.n_layers)])
        self.norm = nn.RMSNorm(a.d_model) if hasattr(nn, "RMSNorm") else RMSNorm(a.d_model, 1e-5)
        self.head = None if a.tie else nn.Linear(a.d_model, a.vocab, bias=False)
        self.cos, self.sin = rope_tables(a.seq, a.d_model // a.n_heads, a.rope_theta, a.device)

    def forward(self, idx, tgt):
        x = self.emb(idx)
        for b in self.blocks:
            x = b(x, self.cos, self.sin)
        x = self.norm(x)
        logits = x @ self.emb.weight.T if self.head is None else self.head(x)
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), tgt.view(-1))


def main():
    p = argparse.ArgumentParser()
    for k, v in dict(d_model=768, n_layers=12, n_heads=12, n_kv_heads=12, d_ff=2048, vocab=50257, seq=1024,
                     batch=8, steps=20, warmup=3).items():
        p.add_argument("--" + k.replace("_", "-"), type=int, default=v)
    p.add_argument("--rope-theta", type=float, default=10000.0)
    p.add_argument("--tie", type=int, default=1)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--peak", type=float, default=989e12)
    p.add_argument("--device", default="cuda")
    p.add_argument("--threads", type=int, default=0, help="CPU intra-op threads (0: torch's default)")
    a = p.parse_args()
    cuda = a.device == "cuda"
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = Model(a).to(a.device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1,
                            **({"fused": True} if cuda else {"foreach": True}))
    step_fn = model
    if a.compile:
        step_fn = torch.compile(model)
    idx = torch.randint(0, a.vocab, (a.batch, a.seq), device=a.device)
    tgt = torch.randint(0, a.vocab, (a.batch, a.seq), device=a.device)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    hd = a.d_model // a.n_heads
    n_matmul = a.n_layers * (2 * a.d_model * a.n_heads * hd + 2 * a.d_model * a.n_kv_heads * hd + 3 * a.d_model * a.d_ff) \
        + a.d_model * a.vocab
    flops_per_token = 6 * n_matmul + 12 * a.n_layers * a.d_model * a.seq
    for i in range(a.warmup + a.steps):
        if i == a.warmup:
            sync()
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
        if cuda:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = step_fn(idx, tgt)
        else:
            loss = step_fn(idx, tgt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    sync()
    dt = time.perf_counter() - t0
    tps = a.steps * a.batch * a.seq / dt
    print(json.dumps({"impl": "torch.compile" if a.compile else "eager", "tokens_per_s": tps,
                      "mfu": tps * flops_per_token / a.peak, "peak_allocated_bytes": torch.cuda.max_memory_allocated() if cuda else 0,
                      "device": a.device, "threads": torch.get_num_threads(),
                      "loss": loss.item(), "params_matmul": n_matmul, "torch": torch.__version__}))


if __name__ == "__main__":
    main()

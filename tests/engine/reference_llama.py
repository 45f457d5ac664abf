#!/usr/bin/python3
"""Independent PyTorch reference for the engine's first training steps.

Reads the initial weights the engine dumped (safetensors, parsed here with the standard library so
no extra package is needed) and its training token shard, replays the engine's batch rule, rebuilds the same LLaMA-style model in
plain PyTorch (RMSNorm, rotate-half RoPE, GQA, SwiGLU, tied embeddings), trains it with
torch.optim.AdamW + clip_grad_norm_ + warmup/cosine for N steps on the same batches, and prints the
losses as JSON. Run with Debian's python3-torch (CPU, fp32).
"""
import json
import math
import struct
import sys

import torch
import torch.nn.functional as F

DTYPES = {"F32": torch.float32, "I64": torch.int64, "F64": torch.float64, "BF16": torch.bfloat16, "F16": torch.float16}


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[base + b : base + e]), dtype=DTYPES[info["dtype"]])
        out[name] = t.reshape(info["shape"]).clone()
    return out


def rms_norm(x, w, eps):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * w).to(x.dtype)


def rope(x, theta):
    T, hd = x.shape[-2], x.shape[-1]
    inv = theta ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = torch.outer(torch.arange(T, dtype=torch.float64), inv)
    emb = torch.cat([ang, ang], -1)
    cos, sin = emb.cos().float(), emb.sin().float()
    x1, x2 = x[..., : hd // 2], x[..., hd // 2 :]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def forward(p, cfg, idx):
    B, T = idx.shape
    H, Hkv, C = cfg["n_heads"], cfg["n_kv_heads"], cfg["d_model"]
    hd = C // H
    x = p["model.embed_tokens.weight"][idx]
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    for i in range(cfg["n_layers"]):
        pre = f"model.layers.{i}."
        h = rms_norm(x, p[pre + "input_layernorm.weight"], cfg["norm_eps"])
        q = (h @ p[pre + "self_attn.q_proj.weight"].T).view(B, T, H, hd).transpose(1, 2)
        k = (h @ p[pre + "self_attn.k_proj.weight"].T).view(B, T, Hkv, hd).transpose(1, 2)
        v = (h @ p[pre + "self_attn.v_proj.weight"].T).view(B, T, Hkv, hd).transpose(1, 2)
        q, k = rope(q, cfg["rope_theta"]), rope(k, cfg["rope_theta"])
        k = k.repeat_interleave(H // Hkv, dim=1)
        v = v.repeat_interleave(H // Hkv, dim=1)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
        att = torch.softmax(att.masked_fill(mask, float("-inf")), -1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + y @ p[pre + "self_attn.o_proj.weight"].T
        h = rms_norm(x, p[pre + "post_attention_layernorm.weight"], cfg["norm_eps"])
        m = F.silu(h @ p[pre + "mlp.gate_proj.weight"].T) * (h @ p[pre + "mlp.up_proj.weight"].T)
        x = x + m @ p[pre + "mlp.down_proj.weight"].T
    x = rms_norm(x, p["model.norm.weight"], cfg["norm_eps"])
    return x @ p["model.embed_tokens.weight"].T


def lr_at(step, cfg):
    if step < cfg["warmup_steps"]:
        return cfg["lr"] * (step + 1) / cfg["warmup_steps"]
    prog = min(max((step - cfg["warmup_steps"]) / max(1, cfg["max_steps"] - cfg["warmup_steps"]), 0.0), 1.0)
    return cfg["min_lr"] + 0.5 * (1 + math.cos(math.pi * prog)) * (cfg["lr"] - cfg["min_lr"])


MASK = (1 << 64) - 1


def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def load_shard(path):
    """fathom token shard: 64-byte header (magic FATHOMTK, version, bytes/token, count, vocab)."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"FATHOMTK", "not a fathom token shard"
    width, count = struct.unpack_from("<IQ", data, 12)
    dtype = {2: torch.int16, 4: torch.int32}[width]
    t = torch.frombuffer(bytearray(data[64 : 64 + count * width]), dtype=dtype).to(torch.int64)
    return t & (0xFFFF if width == 2 else 0xFFFFFFFF)


def batch_at(tokens, cfg, step):
    """The engine's window rule (engine/data/batch_loader.cpp): row b of (step, micro 0), rank 0."""
    B, T = cfg["micro_batch_size"], cfg["seq_len"]
    span = tokens.numel() - T - 1
    rows = []
    for b in range(B):
        global_row = step * B + b
        h = splitmix64(splitmix64(cfg["seed"]) ^ global_row)
        off = h % span
        rows.append(tokens[off : off + T + 1])
    buf = torch.stack(rows)
    return buf[:, :-1], buf[:, 1:]


def main():
    weights_path, shard_path, cfg_path = sys.argv[1:4]
    cfg = json.load(open(cfg_path))
    torch.set_num_threads(1)
    p = {k: v.requires_grad_(True) for k, v in load_safetensors(weights_path).items()}
    tokens = load_shard(shard_path)
    decay = [v for k, v in p.items() if v.dim() >= 2]
    no_decay = [v for k, v in p.items() if v.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]), eps=cfg["eps"])
    losses = []
    for step in range(cfg["steps"]):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        x, y = batch_at(tokens, cfg, step)
        logits = forward(p, cfg, x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(p.values()), cfg["grad_clip"])
        opt.step()
        losses.append(loss.item())
    print(json.dumps(losses))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""PEFT reference for a LoRA run of `fathom-engine bench train` with lora.enabled: the same
LLaMA-shaped model as transformers' LlamaForCausalLM (random init; bf16 weights, SDPA attention),
wrapped by peft.get_peft_model with the same r / alpha / target modules, trained with fused AdamW
on the adapters. Prints one JSON line: tokens/s and peak allocated memory. GPU machine only.
"""
import argparse
import json
import time

import torch
import transformers
import peft


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--d-model", type=int, default=2048)
    p.add_argument("--n-layers", type=int, default=16)
    p.add_argument("--n-heads", type=int, default=32)
    p.add_argument("--n-kv-heads", type=int, default=8)
    p.add_argument("--d-ff", type=int, default=8192)
    p.add_argument("--vocab", type=int, default=151936)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--rope-theta", type=float, default=500000.0)
    p.add_argument("--r", type=int, default=16)
    p.add_argument("--alpha", type=float, default=32.0)
    p.add_argument("--targets", default="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    a = p.parse_args()
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(hidden_size=a.d_model, num_hidden_layers=a.n_layers, num_attention_heads=a.n_heads,
                                   num_key_value_heads=a.n_kv_heads, intermediate_size=a.d_ff, vocab_size=a.vocab,
                                   max_position_embeddings=a.seq, rope_theta=a.rope_theta, tie_word_embeddings=True,
                                   attn_implementation="sdpa")
    model = transformers.LlamaForCausalLM(cfg).to("cuda", torch.bfloat16)
    lcfg = peft.LoraConfig(r=a.r, lora_alpha=a.alpha, lora_dropout=0.0, target_modules=a.targets.split(","),
                           task_type="CAUSAL_LM")
    model = peft.get_peft_model(model, lcfg)
    model.train()
    trainable = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-4, fused=True)
    ids = torch.randint(0, a.vocab, (a.batch, a.seq + 1), device="cuda")
    x, y = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()
    for i in range(a.warmup + a.steps):
        if i == a.warmup:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(input_ids=x).logits
        loss = torch.nn.functional.cross_entropy(logits.float().view(-1, a.vocab), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    n_train = sum(q.numel() for q in trainable)
    print(json.dumps({"impl": "peft", "peft": peft.__version__, "transformers": transformers.__version__,
                      "tokens_per_s": a.steps * a.batch * a.seq / dt, "peak_allocated_bytes": torch.cuda.max_memory_allocated(),
                      "trainable_params": n_train, "steps": a.steps, "loss": loss.item()}))


if __name__ == "__main__":
    main()

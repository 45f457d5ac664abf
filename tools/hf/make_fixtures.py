#!/usr/bin/env python3
"""Tiny Hugging Face models made with the real `transformers`, for Fathom's import tests.

Writes <out>/{llama,qwen2,deepseek_v3}/: what `save_pretrained` writes (config.json,
model.safetensors or shards + index, generation_config.json), plus
  expected.safetensors  input_ids (B, T) int64 and logits (B, T, V) float32, computed in fp32 on CPU
  expected.json         versions, shapes, how the model was made, and for llama its corpus loss.

  llama        GQA (4 heads, 2 kv heads), untied, Fathom's trained_bpe_400 tokenizer.json, briefly
               TRAINED on tests/fixtures/corpus so an import-then-train test can see that the
               weights arrived (loss far below ln(vocab)).
  qwen2        q/k/v biases, tied embeddings, saved SHARDED (small max_shard_size) with an index.
  deepseek_v3  MLA (q_lora_rank set) + MoE (8 routed, 1 shared, top-2, group-limited routing,
               first layer dense) with a random non-zero e_score_correction_bias.

Run where transformers 5.x is installed (the GPU machine): python3 tools/hf/make_fixtures.py OUT
CPU is enough; a GPU only speeds up the llama training. Deterministic (torch.manual_seed).
"""
import glob
import json
import math
import os
import shutil
import sys

import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKENIZER = os.path.join(ROOT, "tests/fixtures/tokenizer/trained_bpe_400.json")
CORPUS = sorted(glob.glob(os.path.join(ROOT, "tests/fixtures/corpus/*.txt")))
B, T = 2, 16


def with_rope(cls, theta, **kw):
    """A config with RoPE base `theta` and no scaling: transformers 5 takes rope_parameters, 4.x rope_theta."""
    import inspect
    if "rope_parameters" in inspect.signature(cls.__init__).parameters:
        return cls(rope_parameters={"rope_type": "default", "rope_theta": theta}, **kw)
    return cls(rope_theta=theta, **kw)


def saved_keys(d):
    keys = {}
    for f in sorted(glob.glob(os.path.join(d, "*.safetensors"))):
        if os.path.basename(f) == "expected.safetensors":
            continue
        with safe_open(f, "pt") as s:
            for k in s.keys():
                keys[k] = [os.path.basename(f), list(s.get_slice(k).get_shape()), s.get_slice(k).get_dtype()]
    return keys


def write_expected(model, d, vocab, extra):
    g = torch.Generator().manual_seed(1234)
    ids = torch.randint(0, vocab, (B, T), generator=g, dtype=torch.int64)
    model = model.to("cpu", torch.float32).eval()
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float().contiguous()
    save_file({"input_ids": ids, "logits": logits}, os.path.join(d, "expected.safetensors"))
    info = {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "architecture": type(model).__name__,
        "input_ids_shape": list(ids.shape),
        "logits_shape": list(logits.shape),
        "logits_abs_max": float(logits.abs().max()),
        "logits_std": float(logits.std()),
        "state_dict_keys": len(model.state_dict()),
        "saved_tensors": saved_keys(d),
    }
    info.update(extra)
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(info, f, indent=1, sort_keys=True)
    print(f"{d}: logits {tuple(logits.shape)} |max| {info['logits_abs_max']:.3f} std {info['logits_std']:.3f}")
    return logits


def corpus_tokens(tok_path):
    from tokenizers import Tokenizer
    try:
        tok = Tokenizer.from_file(tok_path)
    except Exception as e:  # Fathom writes an extra top-level "fathom" key; drop it if refused
        print(f"tokenizers refused {tok_path} ({e}); retrying without the 'fathom' key")
        with open(tok_path) as f:
            tj = json.load(f)
        tj.pop("fathom", None)
        with open(tok_path, "w") as f:
            json.dump(tj, f, ensure_ascii=False)
        tok = Tokenizer.from_file(tok_path)
    eos = tok.token_to_id("<|endoftext|>")
    ids = []
    for p in CORPUS:
        with open(p, encoding="utf-8") as f:
            ids += tok.encode(f.read()).ids + [eos]
    return torch.tensor(ids, dtype=torch.int64), tok


def make_llama(out):
    d = os.path.join(out, "llama")
    torch.manual_seed(0)
    with open(TOKENIZER) as f:
        tj = json.load(f)
    vocab = len(tj["model"]["vocab"]) + len(tj["added_tokens"])  # 401: one more than the tokenizer needs
    eos_id = next(t["id"] for t in tj["added_tokens"] if t["content"] == "<|endoftext|>")
    cfg = with_rope(transformers.LlamaConfig, 10000.0,
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5, tie_word_embeddings=False,
        attention_bias=False, mlp_bias=False, bos_token_id=None, eos_token_id=eos_id, pad_token_id=None,
        initializer_range=0.02)
    model = transformers.LlamaForCausalLM(cfg)
    # Train briefly on the corpus (next-token prediction, random windows) so the weights carry
    # something a loss can see.
    os.makedirs(d, exist_ok=True)
    shutil.copy(TOKENIZER, os.path.join(d, "tokenizer.json"))
    data, _ = corpus_tokens(os.path.join(d, "tokenizer.json"))
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(7)
    seq, steps, bs = 64, 400, 32
    first = last = None
    for step in range(steps):
        starts = torch.randint(0, len(data) - seq - 1, (bs,), generator=g)
        x = torch.stack([data[s:s + seq] for s in starts]).to(dev)
        y = torch.stack([data[s + 1:s + seq + 1] for s in starts]).to(dev)
        for grp in opt.param_groups:
            grp["lr"] = 3e-3 * min(1.0, (step + 1) / 20) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        loss = torch.nn.functional.cross_entropy(model(input_ids=x).logits.float().reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
        last = loss.item()
    model.eval()
    # Loss over the whole corpus in consecutive windows, fp32 on CPU.
    model.to("cpu", torch.float32)
    n = (len(data) - 1) // seq
    with torch.no_grad():
        x = data[: n * seq].view(n, seq)
        y = data[1: n * seq + 1].view(n, seq)
        corpus_loss = float(torch.nn.functional.cross_entropy(model(input_ids=x).logits.reshape(-1, vocab), y.reshape(-1)))
    print(f"llama: trained {steps} steps, loss {first:.3f} -> {last:.3f}; corpus loss {corpus_loss:.3f} "
          f"(ln V = {math.log(vocab):.3f})")
    model.save_pretrained(d, safe_serialization=True)
    write_expected(model, d, vocab, {"corpus_loss": corpus_loss, "ln_vocab": math.log(vocab), "train_steps": steps,
                                     "train_loss_first": first, "train_loss_last": last, "corpus_tokens": len(data),
                                     "window": seq})


def make_qwen2(out):
    d = os.path.join(out, "qwen2")
    torch.manual_seed(1)
    vocab = 256
    cfg = with_rope(transformers.Qwen2Config, 1000000.0,
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-6, tie_word_embeddings=True,
        use_sliding_window=False, initializer_range=0.2, bos_token_id=1, eos_token_id=2)
    model = transformers.Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():  # biases are zero-initialised: make them matter
        for layer in model.model.layers:
            for p in (layer.self_attn.q_proj.bias, layer.self_attn.k_proj.bias, layer.self_attn.v_proj.bias):
                p.normal_(0.0, 0.2)
            layer.input_layernorm.weight.uniform_(0.5, 1.5)
    model.save_pretrained(d, safe_serialization=True, max_shard_size="150KB")
    write_expected(model, d, vocab, {"sharded": os.path.exists(os.path.join(d, "model.safetensors.index.json"))})


def make_deepseek_v3(out):
    d = os.path.join(out, "deepseek_v3")
    torch.manual_seed(2)
    vocab = 256
    cfg = with_rope(transformers.DeepseekV3Config, 10000.0,
        vocab_size=vocab, hidden_size=64, intermediate_size=128, moe_intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, n_shared_experts=1, n_routed_experts=8,
        routed_scaling_factor=2.5, kv_lora_rank=32, q_lora_rank=32, qk_rope_head_dim=8, v_head_dim=16,
        qk_nope_head_dim=16, n_group=2, topk_group=1, num_experts_per_tok=2, first_k_dense_replace=1,
        norm_topk_prob=True, max_position_embeddings=128, rms_norm_eps=1e-6, tie_word_embeddings=False,
        rope_interleave=True, initializer_range=0.2, bos_token_id=0, eos_token_id=1)
    model = transformers.DeepseekV3ForCausalLM(cfg).eval()
    with torch.no_grad():
        for i, layer in enumerate(model.model.layers):
            if i >= cfg.first_k_dense_replace:
                b = layer.mlp.gate.e_score_correction_bias
                b.copy_(torch.rand(b.shape) * 0.6 - 0.3)
    model.save_pretrained(d, safe_serialization=True)
    logits = write_expected(model, d, vocab, {})
    # Show that the correction bias changes the routing (and so the logits).
    with torch.no_grad():
        saved = [l.mlp.gate.e_score_correction_bias.clone() for l in model.model.layers[cfg.first_k_dense_replace:]]
        for l in model.model.layers[cfg.first_k_dense_replace:]:
            l.mlp.gate.e_score_correction_bias.zero_()
        ids = torch.randint(0, vocab, (B, T), generator=torch.Generator().manual_seed(1234), dtype=torch.int64)
        no_bias = model(input_ids=ids).logits
        for l, s in zip(model.model.layers[cfg.first_k_dense_replace:], saved):
            l.mlp.gate.e_score_correction_bias.copy_(s)
    info_path = os.path.join(d, "expected.json")
    with open(info_path) as f:
        info = json.load(f)
    info["logits_change_without_bias"] = float((no_bias - logits).abs().max())
    with open(info_path, "w") as f:
        json.dump(info, f, indent=1, sort_keys=True)
    print(f"deepseek_v3: zeroing e_score_correction_bias changes logits by up to {info['logits_change_without_bias']:.3f}")
    print("deepseek_v3 saved tensors:", sorted(info["saved_tensors"])[:40])


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "hf_fixtures"
    os.makedirs(out, exist_ok=True)
    print("transformers", transformers.__version__, "torch", torch.__version__)
    for fn in (make_llama, make_qwen2, make_deepseek_v3):
        try:
            fn(out)
        except Exception:  # keep the others; the log shows what failed
            import traceback
            traceback.print_exc()


if __name__ == "__main__":
    main()

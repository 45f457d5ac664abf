"""Reference for `fathom-engine bench infer`: Hugging Face transformers `generate` on the same model.

Makes (once) a LlamaForCausalLM with the llama-1b preset's shapes, random weights (seed 0), bf16,
saved with save_pretrained so that Fathom loads the very same weights; then times greedy generate:
batch 1 (decode tokens/s, time to first token) and static batches of 8/32/64 requests (tokens/s).
Prints one JSON line.
"""
import argparse, json, os, shutil, time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("--out", default="/tmp/llama1b-hf")
ap.add_argument("--tokenizer", required=True, help="tokenizer.json to ship with the model")
ap.add_argument("--prompt-tokens", type=int, default=128)
ap.add_argument("--new-tokens", type=int, default=128)
ap.add_argument("--batches", default="1,8,32,64")
ap.add_argument("--make-only", action="store_true")
args = ap.parse_args()

if not os.path.exists(os.path.join(args.out, "config.json")):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=151936, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                      num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=2048,
                      rope_theta=500000.0, tie_word_embeddings=True, rms_norm_eps=1e-5,
                      bos_token_id=None, eos_token_id=151643, torch_dtype="bfloat16")
    m = LlamaForCausalLM(cfg).to(torch.bfloat16)
    m.save_pretrained(args.out, safe_serialization=True)
    shutil.copy(args.tokenizer, os.path.join(args.out, "tokenizer.json"))
if args.make_only:
    raise SystemExit(0)

# As fathom-engine's inference does: no cuDNN attention (it plans per new key length / batch shape).
torch.backends.cuda.enable_cudnn_sdp(False)
model = LlamaForCausalLM.from_pretrained(args.out, torch_dtype=torch.bfloat16).cuda().eval()
g = torch.Generator().manual_seed(1234)
def prompts(b):
    return torch.randint(0, 151643, (b, args.prompt_tokens), generator=g).cuda()

def timed(ids, new):
    torch.cuda.synchronize(); t = time.perf_counter()
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new,
                         do_sample=False, pad_token_id=0)
    torch.cuda.synchronize()
    return time.perf_counter() - t, out.shape[1] - ids.shape[1]

with torch.no_grad():
    t_w = time.perf_counter()
    while time.perf_counter() - t_w < 3.0:  # warm-up: clocks, allocator, kernels (as bench infer --warmup 3)
        timed(prompts(1), 32)
    ttft, _ = timed(prompts(1), 1)
    total, n = timed(prompts(1), args.new_tokens)
    res = {"batch1_decode_tokens_per_s": (n - 1) / (total - ttft), "time_to_first_token_s": ttft,
           "transformers": __import__("transformers").__version__, "torch": torch.__version__, "batches": []}
    for b in [int(x) for x in args.batches.split(",") if x]:
        secs, n = timed(prompts(b), args.new_tokens)
        res["batches"].append({"batch": b, "tokens_per_s": b * n / secs, "seconds": secs})
print(json.dumps(res))

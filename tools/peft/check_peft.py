#!/usr/bin/env python3
"""LoRA adapters between Fathom and PEFT, checked with the real `peft` + `transformers`.

  python3 tools/peft/check_peft.py make   BASE OUT     # PEFT makes an adapter of BASE and its logits
  python3 tools/peft/check_peft.py compare BASE DIR    # compare, see below

make: a PEFT LoRA (r 4, alpha 8, q_proj/v_proj/down_proj, init_lora_weights=False so B != 0) on the
Hugging Face model BASE, saved with save_pretrained to OUT/peft_adapter; OUT/peft_logits.pt holds
the ids and PEFT's fp32 logits.

compare (after Fathom ran, see tools/gpu/check_deepseek_lora.sh):
  1. PEFT -> Fathom: DIR/merged_from_peft is `fathom-engine lora merge OUT/peft_adapter --base BASE
     --to hf`: its logits (transformers) must equal PEFT's within 1e-4.
  2. Fathom -> PEFT: DIR/fathom_adapter is a Fathom fine-tune checkpoint directory; PEFT's
     PeftModel.from_pretrained(BASE, it) must load it with no missing/unexpected keys and give the
     logits of DIR/merged_from_fathom (Fathom's own merge, exported with --to hf) within 1e-4.
Exits non-zero on any failure.
"""
import os
import sys

import torch
import transformers
import peft
from peft import LoraConfig, PeftModel, get_peft_model

TOL = 1e-4


def base_model(path):
    return transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def make(base, out):
    torch.manual_seed(0)
    model = base_model(base)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], lora_dropout=0.0,
                     init_lora_weights=False, task_type="CAUSAL_LM")
    pm = get_peft_model(model, cfg).eval()
    pm.save_pretrained(os.path.join(out, "peft_adapter"))
    ids = torch.randint(0, model.config.vocab_size, (2, 24))
    with torch.no_grad():
        logits = pm(input_ids=ids).logits
    torch.save({"ids": ids, "logits": logits}, os.path.join(out, "peft_logits.pt"))
    print("made", os.path.join(out, "peft_adapter"), "with peft", peft.__version__)


def compare(base, d):
    ok = True
    ref = torch.load(os.path.join(d, "peft_logits.pt"))
    ids = ref["ids"]
    merged = base_model(os.path.join(d, "merged_from_peft"))
    with torch.no_grad():
        got = merged(input_ids=ids).logits
    diff = (got - ref["logits"]).abs().max().item()
    print(f"{'PASS' if diff < TOL else 'FAIL'} PEFT adapter -> fathom lora merge -> transformers: "
          f"max|diff| = {diff:.3e} (|logits| <= {ref['logits'].abs().max().item():.2f})")
    ok &= diff < TOL

    model = base_model(base)
    pm = PeftModel.from_pretrained(model, os.path.join(d, "fathom_adapter")).eval()
    n_lora = sum(1 for n, _ in pm.named_parameters() if "lora_" in n)
    with torch.no_grad():
        peft_logits = pm(input_ids=ids).logits
        fathom_logits = base_model(os.path.join(d, "merged_from_fathom"))(input_ids=ids).logits
        base_logits = base_model(base)(input_ids=ids).logits
    diff = (peft_logits - fathom_logits).abs().max().item()
    moved = (peft_logits - base_logits).abs().max().item()
    print(f"{'PASS' if diff < TOL and moved > 1e-3 else 'FAIL'} fathom adapter -> PeftModel.from_pretrained "
          f"({n_lora} lora tensors): max|peft - fathom merged| = {diff:.3e}; the adapter moves logits by {moved:.3f}")
    ok &= diff < TOL and moved > 1e-3
    print("transformers", transformers.__version__, "peft", peft.__version__, "torch", torch.__version__)
    return ok


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3])
    else:
        sys.exit(0 if compare(sys.argv[2], sys.argv[3]) else 1)

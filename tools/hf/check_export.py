#!/usr/bin/env python3
"""Does transformers load Fathom's exports, and compute Fathom's logits?

For every <dir>/<name>/ written by `test_hf_interop --gtest_filter=HfParity.*` with
FATHOM_HF_PARITY_OUT=<dir> (a Fathom checkpoint exported by `convert --to hf`, plus
fathom_logits.safetensors: the input ids and the logits Fathom computed from the same weights):
  - AutoModelForCausalLM.from_pretrained must report no missing, unexpected or mismatched tensors;
  - its fp32 logits on the same ids must equal Fathom's within 1e-4 (max absolute difference);
  - when there is a tokenizer.json, AutoTokenizer must load it and encode fathom_tokens.json's
    text to the same ids Fathom's tokenizer gave.
Prints one line per export and exits non-zero on any failure. Run where transformers is
installed: python3 tools/hf/check_export.py DIR
"""
import json
import os
import sys
import warnings

import torch
import transformers
from safetensors.torch import load_file

TOL = 1e-4


def check(d):
    name = os.path.basename(d.rstrip("/"))
    ref = load_file(os.path.join(d, "fathom_logits.safetensors"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, info = transformers.AutoModelForCausalLM.from_pretrained(
            d, dtype=torch.float32, output_loading_info=True, attn_implementation="eager")
    problems = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=ref["input_ids"]).logits.float()
    diff = float((logits - ref["logits"]).abs().max())
    ok = not problems and diff < TOL
    line = (f"{name:18s} {type(model).__name__:24s} max|transformers - fathom| = {diff:.3e} "
            f"(|logits| <= {float(ref['logits'].abs().max()):.2f})")
    if problems:
        line += f" LOADING PROBLEMS {problems}"
    tok_path = os.path.join(d, "fathom_tokens.json")
    if os.path.exists(tok_path):
        with open(tok_path) as f:
            t = json.load(f)
        tok = transformers.AutoTokenizer.from_pretrained(d)
        ids = tok(t["text"], add_special_tokens=False)["input_ids"]
        same = ids == t["ids"]
        ok = ok and same
        line += f"; tokenizer {type(tok).__name__} {'same ids' if same else 'DIFFERENT ids'} ({len(ids)} tokens)"
        if not same:
            line += f"\n    transformers {ids}\n    fathom       {t['ids']}"
    for w in caught:
        msg = str(w.message).splitlines()[0]
        if "torch_dtype" in msg or "rope" in msg.lower():
            line += f"\n    warning: {msg[:200]}"
    print(("PASS " if ok else "FAIL ") + line)
    return ok


def main():
    root = sys.argv[1]
    print("transformers", transformers.__version__, "torch", torch.__version__)
    results = [check(os.path.join(root, n)) for n in sorted(os.listdir(root))
               if os.path.exists(os.path.join(root, n, "fathom_logits.safetensors"))]
    print(f"{sum(results)}/{len(results)} exports pass (tolerance {TOL})")
    sys.exit(0 if results and all(results) else 1)


if __name__ == "__main__":
    main()

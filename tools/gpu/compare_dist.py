#!/usr/bin/env python3
"""Compares two Fathom runs (issue #8 equivalence checks): loss curves from events.jsonl (rank 0's
metric records) and the final checkpoint's tensors. Prints one JSON line:
{"name", "steps", "loss_max_abs", "loss_max_rel", "loss_first5_max_rel", "loss_final_rel", "weights_max_abs",
"weights_max_rel", "ok"}; ok = within the fixed tolerances given (the caller may judge against a measured floor).
Usage: compare_dist.py NAME RUN_A RUN_B STEP LOSS_TOL WEIGHT_TOL"""
import json, sys
import torch
from safetensors.torch import load_file

name, a, b, step, loss_tol, w_tol = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])

def losses(run):
    out = []
    for line in open(f"{run}/events.jsonl"):
        r = json.loads(line)
        if r.get("type") == "metric" and r.get("rank", 0) == 0:
            out.append(r["data"]["loss"])
    return out

la, lb = losses(a), losses(b)
n = min(len(la), len(lb))
labs = max((abs(x - y) for x, y in zip(la, lb)), default=float("nan"))
rel = [abs(x - y) / max(abs(x), 1e-12) for x, y in zip(la, lb)]
lrel = max(rel, default=float("nan"))
first5 = max(rel[:5], default=float("nan"))
final = rel[n - 1] if n else float("nan")
wa = load_file(f"{a}/checkpoints/step-{step}/model.safetensors")
wb = load_file(f"{b}/checkpoints/step-{step}/model.safetensors")
wabs = wrel = 0.0
for k, t in wa.items():
    d = (t.double() - wb[k].double()).abs().max().item()
    wabs = max(wabs, d)
    wrel = max(wrel, d / max(t.double().abs().max().item(), 1e-12))
ok = len(la) == len(lb) and labs <= loss_tol and wabs <= w_tol
print(json.dumps({"name": name, "steps": n, "loss_max_abs": labs, "loss_max_rel": lrel, "loss_first5_max_rel": first5,
                  "loss_final_rel": final, "weights_max_abs": wabs,
                  "weights_max_rel": wrel, "ok": ok}))

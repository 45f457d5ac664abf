#!/usr/bin/env python3
"""Structural checks of the deployment files that no installed tool makes (no Docker engine, no
Kubernetes, no Slurm run here). Usage: check_files.py dockerfile|compose|slurm SOURCE_DIR"""
import re
import sys

import yaml

what, src = sys.argv[1], sys.argv[2]
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)


def read(rel):
    with open(f"{src}/{rel}") as f:
        return f.read()


if what == "dockerfile":
    text = read("packaging/Dockerfile")
    stages = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
        if m:
            current = m.group(2) or m.group(1)
            stages[current] = {"base": m.group(1), "user": None, "lines": []}
        elif current:
            stages[current]["lines"].append(line)
            u = re.match(r"USER\s+(\S+)", line)
            if u:
                stages[current]["user"] = u.group(1)
    check(len(stages) >= 4, f"multi-stage: expected build and runtime stages, found {list(stages)}")
    check("engine" in stages and "workbench" in stages, "targets `engine` and `workbench` missing")
    arg = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, re.M))
    base = stages.get("engine", {}).get("base", "")
    base = re.sub(r"\$\{(\w+)\}", lambda m: arg.get(m.group(1), m.group(0)), base)
    check(re.match(r"nvidia/cuda:[0-9.]+-(cudnn-)?runtime-", base) is not None, f"engine base is not a CUDA runtime image: {base}")
    for target in ("engine", "workbench"):
        user = stages.get(target, {}).get("user")
        check(user is not None and not user.startswith("root") and not user.startswith("0"),
              f"target {target} runs as {user or 'root'}")
    check("--from=build-engine" in text, "the engine stage does not copy from the build stage")
    check("ENTRYPOINT" in "\n".join(stages.get("engine", {}).get("lines", [])), "engine target has no ENTRYPOINT")
    check("qt6-base-dev" not in "\n".join(stages.get("engine", {}).get("lines", [])) and
          "FATHOM_GUI=OFF" in "\n".join(stages.get("build-engine", {}).get("lines", [])), "the engine build pulls in Qt")
elif what == "compose":
    doc = yaml.safe_load(read("packaging/docker-compose.yml"))
    serve = doc["services"]["serve"]
    devices = serve["deploy"]["resources"]["reservations"]["devices"]
    check(any("gpu" in d.get("capabilities", []) for d in devices), "serve reserves no GPU")
    vols = " ".join(serve["volumes"])
    check(":/models" in vols and ":/runs" in vols, "serve lacks the models or runs volume")
    test = " ".join(serve["healthcheck"]["test"])
    check("/health" in test, "serve's health check does not call /health")
    check(serve["command"][0] == "serve" and "0.0.0.0" in serve["command"], "serve does not listen on every interface")
    check(str(serve.get("user", "")).split(":")[0] not in ("", "0", "root"), "serve runs as root")
    check(doc["services"]["train"]["command"][0] == "train", "train service")
elif what == "slurm":
    text = read("packaging/slurm/fathom-train.sbatch")
    launcher = read("cluster/launch/SshLauncher.cpp")
    check(re.search(r"^#SBATCH --nodes=\d+", text, re.M) is not None, "no --nodes")
    check(re.search(r"^#SBATCH --ntasks-per-node=\d+", text, re.M) is not None, "no --ntasks-per-node")
    # The per-task environment must be the one the workbench's Slurm export writes.
    want = re.findall(r"(RANK|WORLD_SIZE|LOCAL_RANK|LOCAL_WORLD_SIZE)=(\$SLURM_\w+)", launcher)
    got = re.findall(r"(RANK|WORLD_SIZE|LOCAL_RANK|LOCAL_WORLD_SIZE)=(\$SLURM_\w+)", text)
    check(want and sorted(set(want)) == sorted(set(got)), f"rank environment differs from SshLauncher's export: {want} vs {got}")
    for key in ("distributed.world_size=$SLURM_NTASKS", "distributed.rank=$SLURM_PROCID", "MASTER_ADDR", "MASTER_PORT",
                "scontrol show hostnames", "--kill-on-bad-exit=1"):
        check(key in text, f"missing {key}")
        check(key in launcher, f"SshLauncher's export no longer has {key}: update packaging/slurm")
elif what == "grafana":
    import json
    import subprocess
    import tempfile
    path = f"{src}/packaging/grafana/fathom.json"
    dash = json.loads(read("packaging/grafana/fathom.json"))
    # The committed JSON is what make_dashboard.py writes.
    with tempfile.TemporaryDirectory() as tmp:
        gen = f"{tmp}/make_dashboard.py"
        with open(gen, "w") as f:
            f.write(read("packaging/grafana/make_dashboard.py"))
        subprocess.run([sys.executable, gen], check=True, stdout=subprocess.DEVNULL)
        with open(f"{tmp}/fathom.json") as f:
            check(json.load(f) == dash, "fathom.json differs from make_dashboard.py's output: run it")
    variables = {v["name"] for v in dash["templating"]["list"]}
    ids = [p["id"] for p in dash["panels"]]
    check(len(ids) == len(set(ids)), "panel ids repeat")
    rows = [p for p in dash["panels"] if p["type"] == "row"]
    check([r["title"].split(",")[0].split(" $")[0] for r in rows] == ["Training", "GPU", "Communication", "Serving", "Checkpoints"],
          f"rows: {[r['title'] for r in rows]}")
    for r in rows:
        if "repeat" in r:
            check(r["repeat"] in variables, f"row {r['title']} repeats over unknown ${r['repeat']}")
    check(any(r.get("repeat") == "gpu" for r in rows) and any(r.get("repeat") == "rank" for r in rows),
          "no per-GPU or per-rank repeated row")
    for p in dash["panels"]:
        g = p["gridPos"]
        check(g["x"] + g["w"] <= 24, f"panel {p['title']} is wider than the grid")
        if p["type"] == "row":
            continue
        check(p.get("datasource", {}).get("uid") == "${datasource}", f"panel {p['title']} has no datasource variable")
        refs = [t["refId"] for t in p["targets"]]
        check(len(refs) == len(set(refs)) and refs, f"panel {p['title']}: refIds")
        for t in p["targets"]:
            for v in re.findall(r"\$(?!__)(\w+)", t["expr"]):
                check(v in variables, f"panel {p['title']} uses undefined ${v}")
elif what == "docs":
    # Every metric family the train exporter can write is in docs/deployment.md's table
    # (brace groups `a_{b,c}_d` and a trailing `*` as written there).
    families = re.findall(r'\{"(fathom_\w+)", "(?:gauge|counter|histogram)"', read("engine/telemetry/prometheus.cpp"))
    check(len(families) > 30, "no families found in engine/telemetry/prometheus.cpp")
    doc = read("docs/deployment.md")
    names = set()
    for token in re.findall(r"`(fathom_[\w{},*]+)`", doc):
        m = re.match(r"(.*)\{([\w,]+)\}(.*)", token)
        names.update(m.group(1) + alt + m.group(3) for alt in m.group(2).split(",")) if m else names.add(token)
    for f in families:
        check(f in names or any(n.endswith("*") and f.startswith(n[:-1]) for n in names),
              f"{f} is exported but not in docs/deployment.md")
else:
    sys.exit(f"unknown check {what}")

for f in failures:
    print("FAIL", f)
print(f"{what}: {'ok' if not failures else str(len(failures)) + ' problems'}")
sys.exit(1 if failures else 0)

#!/usr/bin/env bash
# One packaging check for ctest: run_check.sh WHAT SOURCE_DIR NPM_DIR. Runs every checker of that
# kind that is installed, says which are not; exits 77 (skipped) when none is.
set -uo pipefail
what=$1 src=$2 npm=$3
here=$(cd "$(dirname "$0")" && pwd)
ran=0 failed=0
run() {  # run NAME COMMAND...
  local name=$1
  shift
  echo "== $name"
  if "$@"; then ran=$((ran + 1)); else echo "FAILED: $name"; failed=1; ran=$((ran + 1)); fi
}
missing() { echo "-- not run: $1 (not installed; packaging/setup.sh installs it)"; }
have() { command -v "$1" >/dev/null 2>&1; }
yamllint_cfg='{extends: default, rules: {line-length: {max: 130}, document-start: disable, truthy: {check-keys: false}}}'

case "$what" in
  dockerfile)
    run structure python3 "$here/check_files.py" dockerfile "$src"
    if [ -x "$npm/node_modules/.bin/dockerfile-utils" ]; then
      run "dockerfile-utils lint" "$npm/node_modules/.bin/dockerfile-utils" lint "$src/packaging/Dockerfile"
    else missing "dockerfile-utils (npm)"; fi
    if have shellcheck; then run "shellcheck collect-libs.sh" shellcheck "$src/packaging/docker/collect-libs.sh"; else missing shellcheck; fi
    echo "-- not run: docker build (no Docker engine on this machine)" ;;
  compose)
    run structure python3 "$here/check_files.py" compose "$src"
    if have docker-compose; then
      run "docker-compose config" docker-compose -f "$src/packaging/docker-compose.yml" config -q
      run "docker-compose config (all profiles)" docker-compose -f "$src/packaging/docker-compose.yml" --profile train --profile monitoring config -q
    else missing docker-compose; fi
    if have yamllint; then run yamllint yamllint -s -d "$yamllint_cfg" "$src/packaging/docker-compose.yml" "$src/packaging/grafana/provisioning"; else missing yamllint; fi
    if have promtool; then run "promtool check config" promtool check config "$src/packaging/prometheus/prometheus.yml"; else missing promtool; fi ;;
  k8s)
    if have node && [ -d "$npm/node_modules/kubernetes-models" ] && [ -d "$npm/node_modules/js-yaml" ]; then
      run "kubernetes-models schema validation" node "$here/check_k8s.mjs" "$src" "$npm/node_modules"
    else missing "node + kubernetes-models, js-yaml (npm)"; fi
    if have yamllint; then run yamllint yamllint -s -d "$yamllint_cfg" "$src/packaging/k8s"; else missing yamllint; fi
    echo "-- not run: kubectl apply --dry-run=server (no cluster)" ;;
  grafana)
    run structure python3 "$here/check_files.py" grafana "$src"
    echo "-- not run: Grafana itself (the queries are checked by test_prometheus against real scrapes)" ;;
  docs)
    run "metric table" python3 "$here/check_files.py" docs "$src" ;;
  slurm)
    run structure python3 "$here/check_files.py" slurm "$src"
    run "bash -n" bash -n "$src/packaging/slurm/fathom-train.sbatch"
    if have shellcheck; then run shellcheck shellcheck "$src/packaging/slurm/fathom-train.sbatch"; else missing shellcheck; fi
    echo "-- not run: sbatch (no Slurm controller)" ;;
  *) echo "unknown check $what"; exit 2 ;;
esac
[ "$ran" -eq 0 ] && exit 77
exit "$failed"

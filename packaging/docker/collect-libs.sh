#!/usr/bin/env bash
# Copies binaries into PREFIX/bin (plugins stay where they are) and every shared library they load
# into PREFIX/lib, except those the base image or the NVIDIA container runtime provides (glibc,
# the CUDA driver). Used by packaging/Dockerfile. Usage: collect-libs.sh PREFIX FILE...
set -euo pipefail
prefix=$1
shift
mkdir -p "$prefix/bin" "$prefix/lib"
for f in "$@"; do
  case "$f" in
    "$prefix"/*) ;;
    *) install -m 0755 "$f" "$prefix/bin/" ;;
  esac
  LD_LIBRARY_PATH="$prefix/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ldd "$f" \
    | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' \
    | grep -Ev '/(libc|libm|libdl|librt|libpthread|ld-linux[^/]*|libcuda|libnvidia-[^/]*)\.so' \
    | while read -r lib; do
        [ -e "$prefix/lib/$(basename "$lib")" ] || cp -L "$lib" "$prefix/lib/"
      done
done

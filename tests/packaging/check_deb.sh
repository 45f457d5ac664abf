#!/usr/bin/env bash
# Builds the .deb packages with CPack, checks their Depends (dpkg-shlibdeps) resolve on this
# Debian machine (apt-get --simulate), unpacks them into a temporary root (dpkg -x: nothing of the
# system is touched) and runs `fathom --version` and `fathom-engine --version` from there; validates
# the desktop entry and the AppStream metadata. Usage: check_deb.sh BUILD_DIR
set -euo pipefail
build=$1
cd "$build"
rm -rf packages
# Only the packaged programs need to be current (cmake/FathomPackaging.cmake keeps cpack from
# building `all`, the whole test suite, first).
targets=(fathom-engine)
grep -q '^FATHOM_GUI:BOOL=ON' CMakeCache.txt && targets+=(fathom)
cmake --build . --target "${targets[@]}" > cpack-build.log 2>&1 || { tail -50 cpack-build.log; exit 1; }
cpack -G DEB > cpack.log 2>&1 || { cat cpack.log; exit 1; }
shopt -s nullglob
debs=(packages/*.deb)
[ ${#debs[@]} -gt 0 ] || { echo "cpack made no .deb"; cat cpack.log; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
for d in "${debs[@]}"; do
  echo "== $d"
  dpkg-deb --field "$d" Package Version Architecture Depends
  dpkg -x "$d" "$root"
done
engine_deb=(packages/fathom-engine_*.deb)
[ ${#engine_deb[@]} -eq 1 ] || { echo "no fathom-engine package"; exit 1; }
dpkg-deb --field "${engine_deb[0]}" Depends | grep -q 'libc6' || { echo "fathom-engine: Depends lacks shared-library packages"; exit 1; }
echo "== Depends resolvable on this machine"
apt-get --simulate -qq install "${debs[@]/#/./}" > apt-sim.log 2>&1 || { cat apt-sim.log; exit 1; }
grep -E '^(Inst|Conf) ' apt-sim.log | grep -v -E '^(Inst|Conf) fathom' || true
echo "== run from the unpacked root"
"$root/usr/bin/fathom-engine" --version
if [ -e "$root/usr/bin/fathom" ]; then
  dpkg-deb --field packages/fathom_*.deb Depends | grep -q 'fathom-engine' || { echo "fathom does not depend on fathom-engine"; exit 1; }
  "$root/usr/bin/fathom" --version
  if command -v desktop-file-validate >/dev/null; then
    desktop-file-validate "$root"/usr/share/applications/*.desktop
  else
    echo "-- not run: desktop-file-validate (Debian package desktop-file-utils)"
  fi
  if command -v appstreamcli >/dev/null; then
    appstreamcli validate --no-net "$root"/usr/share/metainfo/*.metainfo.xml
  else
    echo "-- not run: appstreamcli (Debian package appstream)"
  fi
  [ -s "$root/usr/share/icons/hicolor/scalable/apps/io.github.fathom.Fathom.svg" ] || { echo "icon missing"; exit 1; }
fi
if command -v lintian >/dev/null; then
  echo "== lintian (information only)"
  lintian --no-tag-display-limit "${debs[@]}" || true
fi
echo "deb packages ok"

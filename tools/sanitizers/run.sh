#!/usr/bin/env bash
# Configures, builds and runs the test suites under sanitizers (issue #12; docs/reliability.md).
#   tools/sanitizers/run.sh asan   AddressSanitizer + UndefinedBehaviorSanitizer (+ LeakSanitizer):
#                                  every unit and e2e test (GUI ones too, offscreen), build-asan/
#   tools/sanitizers/run.sh tsan   ThreadSanitizer: the ingest, job-queue and serving tests, build-tsan/
# Extra arguments go to ctest (e.g. -R test_batcher). Environment: FATHOM_SANITIZE_BUILD_DIR
# (build folder), FATHOM_BUILD_JOBS (ninja -j, default 2), FATHOM_TEST_JOBS (ctest -j, default 2),
# FATHOM_GUI (ON/OFF, asan only; default ON), FATHOM_SANITIZE_SKIP_BUILD=1 (run an existing build).
# Exit status: non-zero when a test fails or any process wrote a sanitizer report.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
mode=${1:-}; shift || true

case "$mode" in
  asan)
    sanitize=address,undefined
    flags="-O1 -g -DNDEBUG"
    build_dir=${FATHOM_SANITIZE_BUILD_DIR:-$here/build-asan}
    gui=${FATHOM_GUI:-ON}
    targets=()            # everything
    # Every unit and e2e test. Not: gpu/bench-only tests, packaging_* (they check packaging files
    # or build .deb archives, not our code at run time) and the layer check (a CMake configure).
    ctest_args=(-L 'unit|e2e' -E '^(packaging_|layer_check)')
    ;;
  tsan)
    sanitize=thread
    flags="-O1 -g1 -DNDEBUG"    # line tables only: stacks with file:line, a cheaper build
    build_dir=${FATHOM_SANITIZE_BUILD_DIR:-$here/build-tsan}
    gui=ON                # the cluster library (ingest, job queue) is part of the GUI build
    # Ingest (RunSession, the registry), the job queue (unit + against the real engine), serving
    # (batcher, HTTP, and 200 concurrent clients with hang-ups for 10 s).
    tests=(test_cluster_run_session test_cluster_workspace test_cluster_job_queue test_cluster_job_queue_e2e
           test_batcher test_serve_e2e test_serve_load)
    targets=(fathom-engine fake_fathom_engine fathom-loadgen "${tests[@]}")
    ctest_args=(-R "^($(IFS='|'; echo "${tests[*]}"))\$")
    ;;
  *) echo "usage: $0 asan|tsan [ctest arguments...]" >&2; exit 2 ;;
esac

t0=$(date +%s)
if [ "${FATHOM_SANITIZE_SKIP_BUILD:-0}" != 1 ]; then
  # -O1: the sanitizers' recommendation (readable stacks, a fraction of -O0's run time).
  cmake -S "$here" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=$flags" -DFATHOM_SANITIZE=$sanitize \
        -DFATHOM_GUI="$gui" -DFATHOM_TESTS=ON >/dev/null || exit 1
  nice -n 5 cmake --build "$build_dir" -j"${FATHOM_BUILD_JOBS:-2}" ${targets[@]+--target "${targets[@]}"} || exit 1
fi
t1=$(date +%s)

logs=$build_dir/sanitizer-logs
rm -rf "$logs"; mkdir -p "$logs"
# Tests not made by fathom_add_test (no per-test log prefix) report to stderr, which ctest shows.
if [ "$mode" = tsan ]; then export OMP_NUM_THREADS=1; fi
( cd "$build_dir" && ctest --output-on-failure -j"${FATHOM_TEST_JOBS:-2}" "${ctest_args[@]}" "$@" )
rc=$?
t2=$(date +%s)

reports=$(find "$logs" -type f | sort)
if [ -n "$reports" ]; then
  echo
  echo "==== sanitizer reports ($(echo "$reports" | wc -l) files in $logs; <test>.<pid>) ===="
  for f in $reports; do
    echo "---- $(basename "$f")"
    head -c 20000 "$f"
  done
  [ "$rc" = 0 ] && rc=1
fi
echo
echo "sanitizers $mode: build $((t1 - t0)) s, tests $((t2 - t1)) s, ctest exit $rc, report files: $(echo -n "$reports" | grep -c . || true)"
exit "$rc"

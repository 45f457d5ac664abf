#!/bin/sh
# Long runs of the fuzzers, one at a time (issue #12: each >= 10 minutes without a crash, leak or
# timeout). Usage: fuzz/run_all.sh [-t SECONDS] [BUILD_DIR] [NAME...]
#   BUILD_DIR defaults to build-fuzz (configure it as fuzz/CMakeLists.txt says; `ninja fuzzers`).
#   Each fuzzer starts from its committed seeds (fuzz/corpus/NAME, read only) and a working corpus
#   kept in BUILD_DIR/fuzz-runs/corpus/NAME (reused by the next run); crashes, leaks, timeouts and
#   OOMs go to BUILD_DIR/fuzz-runs/artifacts/NAME-*; the log to BUILD_DIR/fuzz-runs/NAME.log.
# Prints one markdown table row per fuzzer (executions, exec/s, cov, ft, corpus, peak RSS, result)
# for docs/reliability.md. Exit status 1 when any fuzzer found something.
set -u
secs=600
if [ "${1:-}" = "-t" ]; then secs=$2; shift 2; fi
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build-fuzz}
[ $# -gt 0 ] && shift
names=${*:-config protocol safetensors tokenizer hf_config serve_request jsonl known_hosts}
out=$build/fuzz-runs
mkdir -p "$out/artifacts"
status=0
echo "| fuzzer | seconds | executions | exec/s | cov | ft | corpus (files/size) | peak RSS MB | result |"
echo "|---|---|---|---|---|---|---|---|---|"
for n in $names; do
  bin=$build/bin/fuzz_$n
  if [ ! -x "$bin" ]; then echo "| $n | - | - | - | - | - | - | - | not built |"; status=1; continue; fi
  mkdir -p "$out/corpus/$n"
  dict=""
  [ -f "$here/$n.dict" ] && dict="-dict=$here/$n.dict"
  start=$(date +%s)
  # shellcheck disable=SC2086
  nice -n 10 "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 $dict \
    -artifact_prefix="$out/artifacts/$n-" "$out/corpus/$n" "$here/corpus/$n" > "$out/$n.log" 2>&1
  rc=$?
  took=$(( $(date +%s) - start ))
  last=$(grep -E '^#[0-9]+' "$out/$n.log" | tail -1)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$n.log")
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out/$n.log")
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$out/$n.log")
  cov=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
  ft=$(echo "$last" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
  corp=$(echo "$last" | sed -n 's/.*corp: \([^ ]*\).*/\1/p')
  if [ $rc -eq 0 ]; then result="clean"; else
    result="FOUND (rc $rc): $(grep -m1 -E 'ERROR: |INVARIANT|SUMMARY' "$out/$n.log" | cut -c1-80)"; status=1; fi
  echo "| $n | $took | ${execs:-?} | ${eps:-?} | ${cov:-?} | ${ft:-?} | ${corp:-?} | ${rss:-?} | $result |"
done
exit $status

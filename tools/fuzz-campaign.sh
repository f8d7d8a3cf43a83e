#!/usr/bin/env bash
# A longer fuzzing campaign (docs/RELIABILITY.md records its runs): every target for a given
# number of executions, one after the other on one core, starting from the committed seeds plus
# the working corpus of earlier campaigns (build-fuzz/campaign-corpus/<target>, kept between runs).
# Needs a build-fuzz/ from tools/fuzz-smoke.sh. Exits non-zero when a target reports a finding.
#
#   tools/fuzz-campaign.sh fuzz_onnx=2600000 fuzz_npy=500000 ...
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${CNNCERT_FUZZ_BUILD_DIR:-build-fuzz}"
mkdir -p "$BUILD/campaign" "$BUILD/artifacts"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
status=0
for spec in "$@"; do
  t="${spec%%=*}" runs="${spec#*=}"
  corpus="$BUILD/campaign-corpus/$t"
  mkdir -p "$corpus"
  dict=()
  [[ -f "tests/fuzz/dict/$t.dict" ]] && dict=(-dict="tests/fuzz/dict/$t.dict")
  t0=$(date +%s)
  rc=0
  "$BUILD/fuzz/$t" "$corpus" "tests/fuzz/corpus/$t" -runs="$runs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    "${dict[@]}" -artifact_prefix="$BUILD/artifacts/campaign-$t-" >"$BUILD/campaign/$t.log" 2>&1 || rc=$?
  t1=$(date +%s)
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$BUILD/campaign/$t.log" | grep -o '[0-9]*$' || echo '?')
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$BUILD/campaign/$t.log" | tail -1 || echo '?')
  echo "$t: exit $rc, $execs executions in $((t1 - t0)) s, $cov, corpus $(ls "$corpus" | wc -l) files" | tee -a "$BUILD/campaign/summary.txt"
  [[ $rc -eq 0 ]] || status=1
done
exit $status

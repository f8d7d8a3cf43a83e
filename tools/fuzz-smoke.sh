#!/usr/bin/env bash
# CI smoke test of the libFuzzer targets (tests/fuzz): builds build-fuzz/ with clang, ASan, UBSan
# and libFuzzer, then runs every target for a fixed number of inputs on a copy of its committed
# seed corpus (tests/fuzz/corpus/<target>; the copy may grow, the committed one does not).
# Exits non-zero on any finding: a crash, sanitizer report, leak, timeout, out-of-memory, or an
# expectation of the harness (tests/fuzz/fuzz_common.hpp). Reproducers go to build-fuzz/artifacts/.
#
#   tools/fuzz-smoke.sh                       # all targets, 20000 inputs each
#   CNNCERT_FUZZ_RUNS=200000 tools/fuzz-smoke.sh fuzz_onnx fuzz_npy
#   CNNCERT_FUZZ_SECONDS=120 tools/fuzz-smoke.sh  # ~2 minutes per target instead of a run count
#
# Environment: CNNCERT_JOBS (build jobs, 2), CNNCERT_FUZZ_RUNS (20000), CNNCERT_FUZZ_SECONDS (unset:
# no time limit), CXX (clang++), CNNCERT_FUZZ_BUILD_DIR (build-fuzz).
# Without clang++ or its libFuzzer runtime it prints 'fuzz smoke skipped: ...' and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."

CXX_BIN="${CXX:-clang++}"
JOBS="${CNNCERT_JOBS:-2}"
RUNS="${CNNCERT_FUZZ_RUNS:-20000}"
SECONDS_PER_TARGET="${CNNCERT_FUZZ_SECONDS:-}"
BUILD="${CNNCERT_FUZZ_BUILD_DIR:-build-fuzz}"
ALL_TARGETS=(fuzz_onnx fuzz_npy fuzz_eran_csv fuzz_mnist_idx fuzz_cifar fuzz_sidecar)
TARGETS=("${@:-${ALL_TARGETS[@]}}")

# Largest input per target: above every seed (the shipped models are ~100 KB; three CIFAR
# records are 9219 bytes), small enough to keep the targets fast.
max_len() {
  case "$1" in
    fuzz_onnx) echo 131072 ;;
    fuzz_npy) echo 16384 ;;
    fuzz_eran_csv) echo 8192 ;;
    fuzz_mnist_idx) echo 4096 ;;
    fuzz_cifar) echo 9300 ;;
    fuzz_sidecar) echo 4096 ;;
    *) echo "unknown target $1" >&2; exit 2 ;;
  esac
}

# ---- toolchain check ---------------------------------------------------------------------------
if ! command -v "$CXX_BIN" >/dev/null 2>&1; then
  echo "fuzz smoke skipped: $CXX_BIN not found (install clang)"
  exit 0
fi
if ! "$CXX_BIN" --version 2>/dev/null | grep -qi clang; then
  echo "fuzz smoke skipped: $CXX_BIN is not clang (libFuzzer needs clang)"
  exit 0
fi
probe_dir="$(mktemp -d)"
trap 'rm -rf "$probe_dir"' EXIT
printf '#include <cstddef>\n#include <cstdint>\nextern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n' \
  >"$probe_dir/probe.cpp"
if ! "$CXX_BIN" -fsanitize=fuzzer,address,undefined "$probe_dir/probe.cpp" -o "$probe_dir/probe" >"$probe_dir/log" 2>&1; then
  echo "fuzz smoke skipped: $CXX_BIN cannot link -fsanitize=fuzzer,address,undefined (libclang_rt.fuzzer missing?):"
  sed 's/^/  /' "$probe_dir/log" | head -5
  exit 0
fi

# ---- build -------------------------------------------------------------------------------------
t0=$(date +%s)
cmake -S . -B "$BUILD" -DCNNCERT_FUZZ=ON -DCMAKE_CXX_COMPILER="$CXX_BIN" -DCNNCERT_CUDA=OFF \
  -DCNNCERT_BUILD_TESTS=OFF -DCNNCERT_BUILD_CLI=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j"$JOBS" --target fuzz
t1=$(date +%s)
echo "fuzz smoke: build took $((t1 - t0)) s"

# ---- run ---------------------------------------------------------------------------------------
mkdir -p "$BUILD/artifacts" "$BUILD/smoke-logs"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
status=0
summary=()
for t in "${TARGETS[@]}"; do
  exe="$BUILD/fuzz/$t"
  seeds="tests/fuzz/corpus/$t"
  [[ -x "$exe" ]] || { echo "fuzz smoke: $exe was not built" >&2; exit 2; }
  [[ -d "$seeds" ]] || { echo "fuzz smoke: no seed corpus $seeds" >&2; exit 2; }
  work="$BUILD/smoke-corpus/$t"
  rm -rf "$work"
  mkdir -p "$work"
  cp "$seeds"/* "$work"/
  args=(-max_len="$(max_len "$t")" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
        -artifact_prefix="$BUILD/artifacts/$t-")
  if [[ -n "$SECONDS_PER_TARGET" ]]; then args+=(-max_total_time="$SECONDS_PER_TARGET"); else args+=(-runs="$RUNS"); fi
  [[ -f "tests/fuzz/dict/$t.dict" ]] && args+=(-dict="tests/fuzz/dict/$t.dict")
  marker="$BUILD/smoke-logs/$t.start"
  touch "$marker"
  log="$BUILD/smoke-logs/$t.log"
  s0=$(date +%s.%N)
  set +e
  "$exe" "${args[@]}" "$work" >"$log" 2>&1 &
  pid=$!
  wait "$pid"
  rc=$?
  set -e
  # A run that ends in a crash skips the target's exit handler: remove its scratch directory.
  rm -rf "/dev/shm/cnncert-fuzz-$pid" "/tmp/cnncert-fuzz-$pid"
  s1=$(date +%s.%N)
  secs=$(awk -v a="$s0" -v b="$s1" 'BEGIN { printf "%.1f", b - a }')
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1 || true)
  execs=${execs:-?}
  rate=$(awk -v n="$execs" -v s="$secs" 'BEGIN { if (n ~ /^[0-9]+$/ && s > 0) printf "%.0f", n / s; else print "?" }')
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2 || true)
  new_artifacts=$(find "$BUILD/artifacts" -type f -name "$t-*" -newer "$marker" | sort || true)
  if [[ $rc -ne 0 || -n "$new_artifacts" ]]; then
    status=1
    verdict="FINDING (exit $rc)"
    echo "---- $t: finding; log $log" >&2
    grep -E '^==[0-9]+==ERROR|runtime error|FINDING|SUMMARY|deadly signal|ALARM|out-of-memory|#[0-3] 0x' "$log" | head -20 >&2 || true
    for a in $new_artifacts; do echo "  artifact: $a" >&2; done
  else
    verdict="ok"
  fi
  summary+=("$(printf '%-15s %-18s %10s execs %8s s %8s exec/s  cov %s' "$t" "$verdict" "$execs" "$secs" "$rate" "${cov:-?}")")
  echo "${summary[-1]}"
done
echo "---- fuzz smoke summary ($((t1 - t0)) s build; logs in $BUILD/smoke-logs, artifacts in $BUILD/artifacts)"
printf '%s\n' "${summary[@]}"
exit $status

#!/usr/bin/env bash
# On the GPU machine: runs what tools/prepare-gpu-run.sh built and collected in .gpu/run/ (carry
# .gpu): the GPU tests with CNNCERT_REQUIRE_GPU=1 (a missing GPU or library fails), then the
# CPU-vs-GPU benchmark, writing logs and JSON to OUTDIR. Builds nothing.
# Usage: tools/gpu-run.sh OUTDIR        DRY_RUN=1: everything up to the first step that needs a GPU
# (libraries resolve, tests listed, data present), for a check on a machine without one.
# cuBLAS and cuDNN: CUBLAS_LIB_DIR / CUDNN_LIB_DIR, else searched in the Python wheels' nvidia/
# folders (a namespace package: found by its __path__, not __file__), the CUDA toolkit, ldconfig.
# STEPS="tests" or "bench" runs one of the two (default both: up to TEST_TIMEOUT + BENCH_TIMEOUT
# seconds, so that a device command limit can be met by two calls); GTEST_FILTER selects tests.
set -uo pipefail
out="${1:?usage: tools/gpu-run.sh OUTDIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$(dirname "$0")/.."
root="$PWD"
run="$root/.gpu/run"
dry="${DRY_RUN:-0}"
[ -x "$run/bin/cnncert_gpu_tests" ] || { echo "no $run/bin: run tools/prepare-gpu-run.sh first (and carry .gpu)" >&2; exit 2; }

# Folders that hold a file named $1 (first match wins): wheels, toolkit, system.
find_lib_dir() {
  local name="$1" d
  local roots
  roots="$(python3 -c 'import nvidia, os; print(" ".join(nvidia.__path__))' 2>/dev/null)"
  for d in $roots /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu; do
    [ -d "$d" ] || continue
    local hit
    hit="$(find "$d" -name "$name" -print -quit 2>/dev/null)"
    [ -n "$hit" ] && { dirname "$hit"; return 0; }
  done
  ldconfig -p 2>/dev/null | awk -v n="$name" '$1 == n {print $NF; exit}' | xargs -r dirname
}
for f in "$run"/lib/*.xz; do  # unpacked next to the archive (xz, else Python's lzma)
  [ -e "$f" ] && [ ! -e "${f%.xz}" ] && { xz -dk "$f" 2>/dev/null ||
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$f" "${f%.xz}"; }
done
libpath="$run/lib"
for lib in $(cat "$run/needed-libs.txt" 2>/dev/null); do
  case "$lib" in
    libcudart*) continue ;;  # carried
    libcublas*) dir="${CUBLAS_LIB_DIR:-$(find_lib_dir "$lib")}" ;;
    libcudnn*) dir="${CUDNN_LIB_DIR:-$(find_lib_dir "$lib")}" ;;
    *) dir="" ;;
  esac
  [ -n "$dir" ] && libpath="$libpath:$dir"
done
# cuDNN 9 loads its engine sub-libraries (libcudnn_engines_*.so.9) from its own folder at run time
export LD_LIBRARY_PATH="$libpath:${LD_LIBRARY_PATH:-}"
export CNNCERT_SOURCE_DIR="$root" CNNCERT_SHARED_DATA="$run/data"

{
  echo "== $(date -u) on $(hostname)"
  nvidia-smi -L 2>&1 || true
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  for b in "$run"/bin/* "$run"/lib/libcnncert_cuda.so; do echo "-- ldd $(basename "$b")"; ldd "$b" | grep -E 'cnncert|cuda|cublas|cudnn|=> not found'; done
  "$run/bin/cnncert" gpu || echo "cnncert gpu: no usable GPU"
} 2>&1 | tee "$out/environment.txt"
status=0
if [ "$dry" != 1 ] && grep -q "no usable GPU" "$out/environment.txt"; then
  echo "no usable GPU (see $out/environment.txt)" >&2
  status=1
fi
if grep -q "=> not found" "$out/environment.txt"; then
  echo "a library the binaries need was not found (see $out/environment.txt)" >&2
  status=1
fi
[ -d "$CNNCERT_SHARED_DATA/nets" ] || echo "note: no real networks in $CNNCERT_SHARED_DATA: those tests skip" | tee -a "$out/environment.txt"

if [ "$dry" = 1 ]; then
  "$run/bin/cnncert_gpu_tests" --gtest_list_tests >"$out/gpu-tests.list" || status=1
  echo "dry run: $(grep -c '^  ' "$out/gpu-tests.list") GPU tests listed"
  "$run/bin/cnncert-bench" --help >/dev/null || status=1
  echo "dry run ends before the first GPU step (status $status)"
  exit $status
fi

steps=" ${STEPS:-tests bench} "
if [[ "$steps" == *" tests "* ]]; then
  CNNCERT_REQUIRE_GPU=1 timeout -k 10 "${TEST_TIMEOUT:-300}" "$run/bin/cnncert_gpu_tests" \
    --gtest_output="json:$out/gpu-tests.json" 2>&1 | tee "$out/gpu-tests.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi
if [[ "$steps" == *" bench "* ]]; then
  # shellcheck disable=SC2086
  timeout -k 10 "${BENCH_TIMEOUT:-240}" "$run/bin/cnncert-bench" --root "$root" --data "$CNNCERT_SHARED_DATA" \
    ${BENCH_ARGS:---devices cpu,gpu --norms inf --repeat 3 --count-huge 1 --only shipped,verivital,oval21,resnet_2b,biasfield} \
    --json "$out/bench.json" 2>&1 | tee "$out/bench.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi
exit $status

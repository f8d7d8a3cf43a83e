#!/usr/bin/env bash
# One command on a GPU machine: configure and build with the CUDA engine, run the GPU tests with
# CNNCERT_REQUIRE_GPU=1 (a missing GPU fails), the CPU tests, and the benchmark; logs and the
# benchmark JSON go to OUTDIR. Works without the usual Debian packages when .gpu/ was prepared by
# tools/prepare-gpu-carry.sh (GoogleTest source, header-only CLI11/nlohmann-json, test data).
# cuDNN/cuBLAS are taken from CUDNN_ROOT / CUBLAS_ROOT, or from the nvidia-* Python wheels.
# Usage: tools/gpu-check.sh OUTDIR [extra cmake args]
# STEPS="build gpu-tests cpu-tests bench proven" (default: build gpu-tests bench) picks the steps,
# so that a machine with a per-command time limit can run them in separate calls (the build is
# kept); "proven" times PROVEN against the worst-case search on the GPU engine (issue 5).
# BENCH_ARGS overrides the benchmark's options (default: ℓ∞, 100 images, 3 repeats, CPU and GPU).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: tools/gpu-check.sh OUTDIR}"
shift
mkdir -p "$out"
root="$PWD"
args=(-DCNNCERT_CUDA=ON -DCNNCERT_REQUIRE_CUDA_LIBS=ON -DCMAKE_BUILD_TYPE=Release)
[ -d .gpu/prefix ] && args+=(-DCMAKE_PREFIX_PATH="$root/.gpu/prefix")
[ -d .gpu/googletest ] && args+=(-DCNNCERT_GTEST_SOURCE="$root/.gpu/googletest")
[ -d .gpu/data ] && args+=(-DCNNCERT_SHARED_DATA="$root/.gpu/data")
# The install root (the folder with include/HEADER) inside the nvidia-* Python wheels. `nvidia` is a
# namespace package: its folders come from __path__ (its __file__ is None).
wheel_root() {
  local d hit
  for d in $(python3 -c 'import nvidia; print(" ".join(nvidia.__path__))' 2>/dev/null); do
    hit="$(find "$d" -path "*/include/$1" -print -quit 2>/dev/null)"
    [ -n "$hit" ] && { dirname "$(dirname "$hit")"; return 0; }
  done
}
CUDNN_ROOT="${CUDNN_ROOT:-$(wheel_root cudnn.h)}"
CUBLAS_ROOT="${CUBLAS_ROOT:-$(wheel_root cublas_v2.h)}"
[ -n "$CUDNN_ROOT" ] && args+=(-DCNNCERT_CUDNN_ROOT="$CUDNN_ROOT") && export LD_LIBRARY_PATH="$CUDNN_ROOT/lib:${LD_LIBRARY_PATH:-}"
[ -n "$CUBLAS_ROOT" ] && args+=(-DCNNCERT_CUBLAS_ROOT="$CUBLAS_ROOT") && export LD_LIBRARY_PATH="$CUBLAS_ROOT/lib:${LD_LIBRARY_PATH:-}"
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
{
  echo "== $(date -u) on $(hostname)"
  nvidia-smi -L 2>&1 || true
  nvcc --version 2>&1 | tail -2
  cmake --version | head -1
} | tee "$out/environment.txt"
steps="${STEPS:-build gpu-tests bench}"
has() { [[ " $steps " == *" $1 "* ]]; }
status=0
if has build; then
  cmake -S . -B build-gpu "${gen[@]}" "${args[@]}" "$@" 2>&1 | tee "$out/configure.log" || exit 1
  cmake --build build-gpu -j"$(nproc)" 2>&1 | tail -50 | tee "$out/build.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || exit 1
fi
if has gpu-tests; then
  CNNCERT_REQUIRE_GPU=1 ctest --test-dir build-gpu -L gpu --output-on-failure -V 2>&1 | tee "$out/gpu-tests.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi
if has cpu-tests; then
  ctest --test-dir build-gpu -L cpu -j"$(nproc)" --output-on-failure 2>&1 | tail -30 | tee "$out/cpu-tests.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi
if has bench; then
  data="${CNNCERT_SHARED_DATA:-$root/.gpu/data}"
  [ -d "$data" ] || data="$root/../shared/data"
  # shellcheck disable=SC2086
  build-gpu/cnncert-bench --data "$data" ${BENCH_ARGS:---devices cpu,gpu --norms inf --repeat 3 --count-huge 1 --only shipped,verivital,oval21,resnet_2b,biasfield} \
    --json "$out/bench.json" 2>&1 | tee "$out/bench.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi
if has proven; then
  data="${CNNCERT_SHARED_DATA:-$root/.gpu/data}"
  [ -d "$data" ] || data="$root/../shared/data"
  for dev in cpu gpu; do
    build-gpu/cnncert-bench proven --device "$dev" --repeat 3 --model models/mnist_cnn_3layer_5_3.onnx \
      --images data/mnist_test_100.npy --json "$out/proven_shipped_$dev.json" 2>&1 | tee "$out/proven_shipped_$dev.txt"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  done
  build-gpu/cnncert-bench proven --device gpu --repeat 3 --model "$data/nets/cifar_oval21_base_kw.onnx" \
    --images "$data/images/eran/cifar10_test.csv" --scale 1/255 --mean 0.485,0.456,0.406 --std 0.225 \
    --json "$out/proven_oval21_gpu.json" 2>&1 | tee "$out/proven_oval21_gpu.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi
exit $status

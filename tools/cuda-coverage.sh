#!/usr/bin/env bash
# Line coverage of the CUDA engine under the CPU emulation (docs/CUDA_EMULATION.md): the emulated
# build with gcc's --coverage (build-cov/, Debug at -O1), CTest's label gpu, then a gcovr report of
# cuda/ and of the host files whose code the kernels and the batched engine run (the element
# bodies, the relaxations, the engine that issues the primitives). Lines never executed are
# listed by number. Not part of the README's test command (it takes about 10 minutes on 2 cores);
# gcovr is taken from PATH or installed with pip into .venv-cov/.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${CNNCERT_JOBS:-2}"
BUILD="${CNNCERT_COV_BUILD:-build-cov}"

gcovr=gcovr
if ! command -v gcovr >/dev/null; then
  [ -x .venv-cov/bin/gcovr ] || { python3 -m venv .venv-cov && .venv-cov/bin/pip -q install gcovr; }
  gcovr=.venv-cov/bin/gcovr
fi
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Debug -DCNNCERT_CUDA_EMULATION=ON -DCNNCERT_BUILD_CLI=OFF \
  -DCMAKE_CXX_FLAGS="--coverage -O1" -DCMAKE_EXE_LINKER_FLAGS=--coverage -DCMAKE_SHARED_LINKER_FLAGS=--coverage \
  >/dev/null
cmake --build "$BUILD" -j"$JOBS" --target cnncert_gpu_tests
find "$BUILD" -name '*.gcda' -delete
ctest --test-dir "$BUILD" -L gpu -j"$JOBS" --output-on-failure
# Inline functions of headers are counted in every object that compiles them and run from the
# one the linker keeps: gcovr adds the objects up. The emulator's fiber switches run billions of
# times, which gcovr takes for corrupt counts unless its threshold is off.
"$gcovr" -r . "$BUILD" -j"$JOBS" --gcov-suspicious-hits-threshold 0 --gcov-ignore-parse-errors=all \
  --filter 'cuda/' --filter 'host/engine/batched_kernels.hpp' --filter 'host/engine/batched_engine.cpp' \
  --filter 'include/cnncert/relaxation.hpp' --txt -

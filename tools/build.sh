#!/usr/bin/env bash
# Configures and builds cnncert into ./build (Release, CUDA engine when a toolkit is found).
# Extra arguments go to the CMake configure step, e.g. tools/build.sh -DCNNCERT_CUDA=OFF
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="${CNNCERT_JOBS:-2}"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build build -j"$jobs"

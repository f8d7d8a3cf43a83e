#!/usr/bin/env bash
# The race check (docs/CUDA_EMULATION.md): the CUDA sources built for the CPU emulation with
# ThreadSanitizer (build-race/, -DCNNCERT_RACECHECK=ON), then CTest's label racecheck: the
# per-primitive GPU tests and the smaller engine tests with no data race reported between emulated
# threads or blocks, and kernels with a race on purpose reported. Skipped, with a message, where
# the compiler cannot build and run a ThreadSanitizer program (no libtsan; a kernel whose address
# space layout the sanitizer's runtime does not support even without randomization).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${CNNCERT_JOBS:-2}"
BUILD="${CNNCERT_RACE_BUILD:-build-race}"

probe_dir="$(mktemp -d)"
trap 'rm -rf "$probe_dir"' EXIT
printf '#include <thread>\nint x;\nint main() { std::thread t([] { x = 1; }); t.join(); return x == 1 ? 0 : 1; }\n' \
  >"$probe_dir/probe.cpp"
if ! "${CXX:-g++}" -std=c++20 -fsanitize=thread "$probe_dir/probe.cpp" -o "$probe_dir/probe" >"$probe_dir/log" 2>&1; then
  echo "race check skipped: ${CXX:-g++} cannot link -fsanitize=thread (libtsan missing?):"
  sed 's/^/  /' "$probe_dir/log" | head -5
  exit 0
fi
# Older sanitizer runtimes fail on kernels with more address-space randomization; without it
# (setarch -R) they run.
run=()
if ! "$probe_dir/probe" >"$probe_dir/log" 2>&1; then
  if setarch "$(uname -m)" -R "$probe_dir/probe" >/dev/null 2>&1; then
    run=(setarch "$(uname -m)" -R)
    echo "race check: ThreadSanitizer runs only without address-space randomization here (setarch -R)"
  else
    echo "race check skipped: a ThreadSanitizer program does not run on this machine:"
    sed 's/^/  /' "$probe_dir/log" | head -5
    exit 0
  fi
fi

cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCNNCERT_CUDA_EMULATION=ON -DCNNCERT_RACECHECK=ON \
  -DCNNCERT_BUILD_CLI=OFF >/dev/null
cmake --build "$BUILD" -j"$JOBS" --target cnncert_gpu_tests cnncert_race_cases
"${run[@]}" ctest --test-dir "$BUILD" -L racecheck --output-on-failure -j"$JOBS"

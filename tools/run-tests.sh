#!/usr/bin/env bash
# Installs what is missing, checks the format (tools/check-format.sh: every C++/CUDA file follows
# .clang-format; CNNCERT_FORMAT_CHECK=0 skips it), builds, and runs every test that can run on this machine (CPU tests
# always; GPU tests run on a GPU and skip without one, unless CNNCERT_REQUIRE_GPU=1), after the
# fuzz smoke (tools/fuzz-smoke.sh: every libFuzzer target for 20000 inputs; skipped without clang,
# or with CNNCERT_FUZZ_SMOKE=0). Then the GPU tests once more on the CUDA sources built for the CPU
# emulation (build-emu/, docs/CUDA_EMULATION.md; CNNCERT_EMULATION_TESTS=0 skips it), and the race
# check: those sources with ThreadSanitizer (tools/race-check.sh, build-race/; CNNCERT_RACE_CHECK=0
# skips it, and it skips itself where ThreadSanitizer programs cannot run). Last, the
# Python module: `pip install .` into build-venv/ and its pytest suite (tools/python-tests.sh;
# CNNCERT_PYTHON_TESTS=0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="${CNNCERT_JOBS:-2}"
tools/install-deps.sh
format=0
if [[ "${CNNCERT_FORMAT_CHECK:-1}" != 0 ]]; then
  tools/check-format.sh || format=$?
fi
tools/build.sh
# The fuzz smoke first, so that ctest's summary closes the output.
fuzz=0
if [[ "${CNNCERT_FUZZ_SMOKE:-1}" != 0 ]]; then
  tools/fuzz-smoke.sh || fuzz=$?
fi
status=0
ctest --test-dir build --output-on-failure -j"$jobs" || status=$?
if [[ "${CNNCERT_EMULATION_TESTS:-1}" != 0 ]]; then
  echo "== the CUDA engine under CPU emulation (build-emu/)"
  cmake -S . -B build-emu -DCMAKE_BUILD_TYPE=Release -DCNNCERT_CUDA_EMULATION=ON -DCNNCERT_BUILD_CLI=OFF >/dev/null
  cmake --build build-emu -j"$jobs" --target cnncert_gpu_tests
  ctest --test-dir build-emu -L gpu --output-on-failure -j"$jobs" || status=$?
fi
if [[ "${CNNCERT_RACE_CHECK:-1}" != 0 ]]; then
  echo "== the race check: the CUDA engine under CPU emulation with ThreadSanitizer (build-race/)"
  tools/race-check.sh || status=$?
fi
if [[ "${CNNCERT_PYTHON_TESTS:-1}" != 0 ]]; then
  echo "== the Python module (pip install . into build-venv/, pytest tests/python)"
  tools/python-tests.sh || status=$?
fi
if ((fuzz)); then
  echo "the fuzz smoke failed (exit $fuzz): see its output above" >&2
  exit "$fuzz"
fi
if ((format)); then
  echo "the format check failed: see its list above (tools/check-format.sh --fix)" >&2
  exit "$format"
fi
exit "$status"

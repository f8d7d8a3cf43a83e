#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test that can run on this machine (CPU tests
# always; GPU tests run on a GPU and skip without one, unless CNNCERT_REQUIRE_GPU=1), after the
# fuzz smoke (tools/fuzz-smoke.sh: every libFuzzer target for 20000 inputs; skipped without clang,
# or with CNNCERT_FUZZ_SMOKE=0).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
tools/build.sh
# The fuzz smoke first, so that ctest's summary closes the output.
fuzz=0
if [[ "${CNNCERT_FUZZ_SMOKE:-1}" != 0 ]]; then
  tools/fuzz-smoke.sh || fuzz=$?
fi
ctest --test-dir build --output-on-failure -j"${CNNCERT_JOBS:-2}"
if ((fuzz)); then
  echo "the fuzz smoke failed (exit $fuzz): see its output above" >&2
  exit "$fuzz"
fi

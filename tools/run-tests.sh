#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test that can run on this machine (CPU tests
# always; GPU tests run on a GPU and skip without one, unless CNNCERT_REQUIRE_GPU=1).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
tools/build.sh
ctest --test-dir build --output-on-failure -j"${CNNCERT_JOBS:-2}"

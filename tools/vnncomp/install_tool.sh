#!/usr/bin/env bash
# VNN-COMP harness: install_tool.sh v1 — builds cnncert (installs the Debian packages it needs).
set -euo pipefail
[ "${1:-v1}" = v1 ] || { echo "expected version string v1, got $1" >&2; exit 1; }
cd "$(dirname "$0")/../.."
tools/install-deps.sh
tools/build.sh -DCNNCERT_BUILD_TESTS=OFF

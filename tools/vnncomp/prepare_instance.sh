#!/usr/bin/env bash
# VNN-COMP harness: prepare_instance.sh v1 CATEGORY ONNX VNNLIB — nothing to precompute; checks
# that the files exist and the command is built (the model and property are read by run_instance).
set -euo pipefail
[ "$#" -ge 4 ] && [ "$1" = v1 ] || { echo "usage: prepare_instance.sh v1 CATEGORY ONNX VNNLIB" >&2; exit 1; }
cli="${CNNCERT_CLI:-$(dirname "$0")/../../build/cnncert}"
[ -x "$cli" ] || { echo "cnncert is not built: run tools/vnncomp/install_tool.sh v1" >&2; exit 1; }
for f in "$3" "$4"; do [ -f "$f" ] || { echo "$f: no such file" >&2; exit 1; }; done
exit 0

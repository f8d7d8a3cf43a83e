#!/usr/bin/env bash
# VNN-COMP harness: run_instance.sh v1 CATEGORY ONNX VNNLIB RESULTS_FILE TIMEOUT — writes sat (with
# the counterexample), unsat, unknown or timeout to RESULTS_FILE. .onnx.gz / .vnnlib.gz are read
# directly (the model through a temporary uncompressed copy). CNNCERT_VNN_ARGS adds options, e.g.
# "--device gpu" or "--method crown".
set -uo pipefail
[ "$#" -ge 6 ] && [ "$1" = v1 ] || { echo "usage: run_instance.sh v1 CATEGORY ONNX VNNLIB RESULTS_FILE TIMEOUT" >&2; exit 1; }
onnx="$3" vnnlib="$4" result="$5" timeout="$6"
cli="${CNNCERT_CLI:-$(dirname "$0")/../../build/cnncert}"
tmp=""
trap '[ -n "$tmp" ] && rm -f "$tmp"' EXIT
if [[ "$onnx" == *.gz ]]; then
  tmp="$(mktemp --suffix=.onnx)"
  gunzip -c "$onnx" > "$tmp" || { echo "unknown" > "$result"; exit 0; }
  onnx="$tmp"
fi
# The tool's own limit a little under the harness's, so that the answer is written in time; the
# outer timeout makes a hang a "timeout" rather than no result.
inner=$(awk -v t="$timeout" 'BEGIN { v = t * 0.9 - 1; print (v > 1 ? v : 1) }')
# shellcheck disable=SC2086
timeout -k 5 "$timeout" "$cli" vnnlib "$onnx" "$vnnlib" --timeout "$inner" --result "$result" ${CNNCERT_VNN_ARGS:-} >&2
rc=$?
if ((rc == 124 || rc == 137)); then echo "timeout" > "$result"
elif ((rc != 0)); then echo "unknown" > "$result"   # e.g. an unsupported op: no answer, never a wrong one
fi
exit 0

#!/usr/bin/env bash
# Runs every instance of a VNN-COMP benchmark folder (its instances.csv: onnx,vnnlib,timeout, paths
# relative to the folder; an optional 4th column with the expected answer) through the harness
# scripts, and prints one line per instance and a summary: counts per answer, time, and a score in
# the competition's form (10 per correct sat/unsat; with expected answers, −150 per wrong one).
# Usage: tools/vnncomp/run_benchmark.sh BENCHMARK_DIR [CATEGORY] [OUT_DIR]   (CNNCERT_VNN_MAX_TIMEOUT=S caps the timeouts)
set -euo pipefail
dir="${1:?usage: run_benchmark.sh BENCHMARK_DIR [CATEGORY] [OUT_DIR]}"
cat="${2:-$(basename "$dir")}"
out="${3:-$(mktemp -d)}"
here="$(cd "$(dirname "$0")" && pwd)"
csv="$dir/instances.csv"
if [ ! -f "$csv" ]; then  # VNN-COMP 2021 names it BENCHMARK_instances.csv
  shopt -s nullglob
  found=("$dir"/*instances.csv)
  ((${#found[@]} == 1)) || { echo "$dir: no instances.csv (or more than one *instances.csv)" >&2; exit 2; }
  csv="${found[0]}"
fi
cap="${CNNCERT_VNN_MAX_TIMEOUT:-}"  # caps every instance's timeout (seconds), for quick runs
mkdir -p "$out"
printf "%-4s %-40s %-48s %-8s %8s\n" "#" onnx vnnlib answer seconds
n=0
summary="$out/summary.tsv"
: > "$summary"
while IFS=, read -r onnx vnnlib timeout expected || [ -n "${onnx:-}" ]; do
  # (fields without spaces or the CR of a CRLF file, as VNN-COMP 2021's CSVs have)
  onnx="${onnx//[$' \r']/}" vnnlib="${vnnlib//[$' \r']/}" timeout="${timeout//[$' \r']/}" expected="${expected//[$' \r']/}"
  [ -z "$onnx" ] && continue
  n=$((n + 1))
  res="$out/result_$n.txt"
  rm -f "$res"
  limit="${timeout%.*}"
  [[ "$limit" =~ ^[0-9]+$ ]] || limit=300
  ((limit < 1)) && limit=1  # ("0.5" would be 0: no limit at all)
  [ -n "$cap" ] && ((limit > cap)) && limit="$cap"
  t0=$(date +%s.%N)
  if "$here/prepare_instance.sh" v1 "$cat" "$dir/$onnx" "$dir/$vnnlib" >/dev/null 2>"$out/log_$n.txt"; then
    "$here/run_instance.sh" v1 "$cat" "$dir/$onnx" "$dir/$vnnlib" "$res" "$limit" 2>>"$out/log_$n.txt"
  fi
  t1=$(date +%s.%N)
  answer=$(head -1 "$res" 2>/dev/null || echo "missing")
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  printf "%-4s %-40s %-48s %-8s %8s\n" "$n" "$onnx" "$vnnlib" "$answer" "$secs"
  printf "%s\t%s\t%s\n" "$answer" "$secs" "$expected" >> "$summary"
done < <(tail -n +1 "$csv" | grep -v '^#')
awk -F'\t' '
  { count[$1]++; total += $2
    if ($1 == "sat" || $1 == "unsat") { if ($3 != "" && $3 != $1 && ($3 == "sat" || $3 == "unsat")) { wrong++; score -= 150 } else score += 10 } }
  END { printf "\n%d instances: %d unsat, %d sat, %d unknown, %d timeout", NR, count["unsat"], count["sat"], count["unknown"], count["timeout"]
        if (count["missing"]) printf ", %d without a result", count["missing"]
        printf "; %.1f s in all; score %d", total, score
        if (wrong) printf " (%d WRONG)", wrong
        printf "\n" }' "$summary"

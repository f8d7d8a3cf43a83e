#!/usr/bin/env bash
# Certifications per second of `cnncert certify` on the shipped model (100 images, l-inf, CNN-Cert
# search) as one process and as 1..4 MPI ranks on this machine, interleaved repeat by repeat; prints
# the median wall time and throughput of each configuration (whole command: MPI start-up included).
# Usage: bench/mpi_throughput.sh [REPEATS] [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
repeats="${1:-5}" build="${2:-build}"
cli="$build/cnncert"
args=(certify models/mnist_cnn_3layer_5_3.onnx data/mnist_test_100.npy -q)
mpi=(mpirun --oversubscribe)
[ "$(id -u)" -eq 0 ] && mpi+=(--allow-run-as-root)
names=("1 process, 2 threads" "1 process, 1 thread" "mpirun -np 1" "mpirun -np 2" "mpirun -np 3" "mpirun -np 4")
run_config() {
  case "$1" in
    0) "$cli" "${args[@]}" ;;
    1) "$cli" "${args[@]}" --threads 1 ;;
    *) "${mpi[@]}" -np $(($1 - 1)) "$cli" "${args[@]}" ;;
  esac
}
declare -A times
for ((r = 0; r < repeats; r++)); do
  for c in 0 1 2 3 4 5; do
    t0=$(date +%s.%N)
    run_config "$c" >/dev/null
    t1=$(date +%s.%N)
    times[$c]+="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }') "
  done
done
certified=$("$cli" "${args[@]}" | sed -n 's/.*images = \([0-9]*\) certified.*/\1/p')
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%F); $repeats repeats; $certified images certified"
printf "%-24s %10s %12s %10s\n" configuration "median s" "certs/s" "vs 1 proc"
base=""
for c in 0 1 2 3 4 5; do
  med=$(echo "${times[$c]}" | tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}')
  [ -z "$base" ] && base=$med
  awk -v n="${names[$c]}" -v m="$med" -v k="$certified" -v b="$base" 'BEGIN { printf "%-24s %10.3f %12.1f %9.2fx\n", n, m, k / m, b / m }'
done

#!/usr/bin/env bash
# Installs the Debian packages cnncert needs to build and test, when any is missing.
# The CUDA toolkit is optional and never installed here (the build uses it when present).
set -euo pipefail

# install WHAT PKG...: apt-get install of the packages among PKG that are missing (returns apt's status).
install() {
  local what="$1" missing=() p
  shift
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  echo "installing${what:+ ($what)}: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

install "" cmake make g++ libgtest-dev nlohmann-json3-dev libcli11-dev zlib1g-dev libglpk-dev libopenblas-dev clang-format-14
# MPI for `mpirun -np N cnncert certify` (the build leaves MPI out without it), and the venv module
# for the Python module's tests (tools/python-tests.sh).
install "MPI, Python venv" libopenmpi-dev openmpi-bin python3-venv python3-dev ||
  echo "MPI / python3-venv not installed: cnncert is built without MPI, the Python tests need a venv-capable python3"
# Optional: clang with the libFuzzer runtime for tools/fuzz-smoke.sh (which skips without them).
install "optional, for the fuzz smoke" clang libclang-rt-14-dev ||
  echo "optional packages not installed: the fuzz smoke will be skipped"

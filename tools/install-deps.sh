#!/usr/bin/env bash
# Installs the Debian packages cnncert needs to build and test, when any is missing.
# The CUDA toolkit is optional and never installed here (the build uses it when present).
set -euo pipefail
pkgs=(cmake make g++ libgtest-dev nlohmann-json3-dev libcli11-dev zlib1g-dev libglpk-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Optional: clang with the libFuzzer runtime for tools/fuzz-smoke.sh (which skips without them).
opt=(clang libclang-rt-14-dev)
opt_missing=()
for p in "${opt[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || opt_missing+=("$p")
done
if ((${#opt_missing[@]})); then
  echo "installing (optional, for the fuzz smoke): ${opt_missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${opt_missing[@]}" >/dev/null; } ||
    echo "optional packages not installed: the fuzz smoke will be skipped"
fi

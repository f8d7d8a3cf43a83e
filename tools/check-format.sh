#!/usr/bin/env bash
# Checks that every C++/CUDA file follows .clang-format (clang-format 14, Debian 12's); exits 1
# listing the files that differ. With --fix, formats them instead.
# Usage: tools/check-format.sh [--fix]
set -euo pipefail
cd "$(dirname "$0")/.."
fmt="$(command -v clang-format-14 || true)"
if [ -z "$fmt" ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq clang-format-14 >/dev/null
  fmt="$(command -v clang-format-14)"
fi
mapfile -t files < <(git ls-files '*.cpp' '*.hpp' '*.cu' '*.cuh' '*.h')
if [ "${1:-}" = "--fix" ]; then
  "$fmt" -i "${files[@]}"
  exit 0
fi
bad=()
for f in "${files[@]}"; do
  "$fmt" --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if ((${#bad[@]})); then
  echo "format check: ${#bad[@]} file(s) differ from .clang-format (tools/check-format.sh --fix formats them):" >&2
  printf '  %s\n' "${bad[@]}" >&2
  exit 1
fi
echo "format check: ${#files[@]} C++/CUDA files follow .clang-format"

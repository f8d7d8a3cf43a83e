#!/usr/bin/env bash
# Run HERE (a machine with the Debian packages) before tools/gpu-check.sh on a GPU machine that
# lacks them: copies GoogleTest's source, the header-only CLI11 and nlohmann-json (with their
# CMake configs) and the real test data into .gpu/ (git-ignored), to be carried along.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .gpu
mkdir -p .gpu/prefix/include .gpu/prefix/share/cmake
cp -r /usr/src/googletest .gpu/googletest
cp -r /usr/include/CLI /usr/include/nlohmann .gpu/prefix/include/
cp -r /usr/share/cmake/CLI11 /usr/share/cmake/nlohmann_json .gpu/prefix/share/cmake/
if [ -d ../shared/data ]; then
  mkdir -p .gpu/data
  cp -r ../shared/data/nets ../shared/data/images .gpu/data/
  rm -f .gpu/data/nets/gtsrb_bnn_48_bn_maxpool_sign.onnx  # large and unsupported: keeps the carry small
fi
du -sh .gpu

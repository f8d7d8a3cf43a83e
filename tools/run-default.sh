#!/usr/bin/env bash
# The main job on what ships with the project: installs what is missing, builds, and certifies
# the shipped MNIST CNN (l-inf, CNN-Cert-Ada, random targets) on the 100 shipped test images.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
tools/build.sh
build/cnncert certify models/mnist_cnn_3layer_5_3.onnx data/mnist_test_100.npy "$@"

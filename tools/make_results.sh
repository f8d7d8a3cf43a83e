#!/usr/bin/env bash
# Regenerates docs/results/*.json and docs/RESULTS.md (with plots) from the shipped zoo:
# cnncert-bench compare on the first N shipped MNIST test images, random targets (seed 1215).
# Needs a build (tools/build.sh); the plots need python3-matplotlib (Debian).
# Usage: tools/make_results.sh [N]     (default 10 images; the CPU engine, 2 cores: ~30 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-10}"
out=docs/results
mkdir -p "$out"
bench=build/cnncert-bench
images=data/mnist_test_100.npy
# Every method, the slow baselines too, on the same N images: the rows compare like with like.
common=(-n "$N" --slow-count "$N" --clever-batches 20 --clever-samples 50)
# ReLU networks: CNN-Cert-Ada vs CNN-Cert-Relu vs Fast-Lin (dense) vs Global-Lips vs LP, attacks, CLEVER
for m in mnist_cnn_4layer_5_3 mnist_cnn_4layer_5_3_bn mnist_cnn_lenet mnist_cnn_lenet_avgpool mnist_3layer_fc_20; do
  echo "== $m" >&2
  "$bench" compare --model "models/$m.onnx" --images "$images" "${common[@]}" --json "$out/$m.json" >"$out/$m.txt"
done
# sigmoid / tanh / arctan networks: CNN-Cert vs DeepCert (vs CROWN's sound bounds)
for m in mnist_cnn_4layer_5_3_sigmoid mnist_cnn_4layer_5_3_tanh mnist_cnn_4layer_5_3_atan; do
  echo "== $m" >&2
  "$bench" compare --model "models/$m.onnx" --images "$images" "${common[@]}" --methods ada,deepcert,crown,lips,pgd,cw,clever \
    --json "$out/$m.json" >"$out/$m.txt"
done
# PROVEN vs worst case (uniform noise, l-inf, 99.99 %)
for m in mnist_cnn_4layer_5_3 mnist_cnn_lenet mnist_cnn_4layer_5_3_sigmoid; do
  echo "== proven $m" >&2
  build/cnncert proven "models/$m.onnx" "$images" -n "$N" -q --json "$out/proven_$m.json" >"$out/proven_$m.txt"
done
py=python3
/usr/bin/python3 -c "import matplotlib" 2>/dev/null && py=/usr/bin/python3
"$py" tools/plot_results.py "$out" docs

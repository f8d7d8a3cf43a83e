#!/usr/bin/env python3
"""Train and export cnncert's shipped default model, ``mnist_cnn_3layer_5_3``.

Purpose
    Reproducibly train the CNN-Cert-style pure CNN used as the project's default
    model and write everything the C++ side ships with it:

      models/mnist_cnn_3layer_5_3.onnx        ONNX, opset 13, input "input" (N,1,28,28),
                                               output "logits" (N,10); ops Conv, Relu,
                                               Flatten, Gemm only (no Softmax)
      models/mnist_cnn_3layer_5_3.onnx.json   input convention sidecar read by the C++ loader
      models/README.md                         model table
      data/mnist_test_100.npy                  first 100 MNIST test images, uint8 (100,1,28,28)
      data/mnist_test_100.labels.npy           their labels, int64 (100,)

    Architecture: 3 x [Conv2d(5 filters, 3x3, stride 1, no padding, bias) + ReLU],
    Flatten, Linear(5*22*22 = 2420 -> 10).
    Input convention (as in CNN-Cert): x = pixel/255 - 0.5, i.e. scale 1/255,
    mean 0.5, std 1, layout NCHW; the network sees values in [-0.5, 0.5].

How to run (from anywhere; paths are relative to the repository root)
    /usr/bin/python3 tools/train_default_model.py [--data-dir /work/shared/data]

Which python
    Debian's /usr/bin/python3 with python3-torch (tested with torch 1.13.1) and
    python3-numpy. Reads MNIST from <data-dir>/images/mnist/*-ubyte.gz (idx format,
    parsed with numpy; no torchvision). If onnxruntime is importable (or another
    `python3` on PATH has it) the exported file is checked with it as well.

Determinism
    Fixed seeds, torch.use_deterministic_algorithms(True), one CPU thread, and a
    numpy-generated shuffling order: running the script twice produces a
    byte-identical ONNX file (doc strings are stripped from the exported graph).
    Training takes ~2-4 minutes on 2 CPU cores.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import torch
import torch.nn as nn

from mnist_data import load_mnist, preprocess, sidecar_convention  # noqa: E402 (the script's folder)
from torch_train import accuracy, fit  # noqa: E402

NAME = "mnist_cnn_3layer_5_3"
SEED = 20240601
EPOCHS = 10
BATCH = 128
LR = 1e-3

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_model():
    return nn.Sequential(
        nn.Conv2d(1, 5, kernel_size=3, stride=1, padding=0, bias=True), nn.ReLU(),
        nn.Conv2d(5, 5, kernel_size=3, stride=1, padding=0, bias=True), nn.ReLU(),
        nn.Conv2d(5, 5, kernel_size=3, stride=1, padding=0, bias=True), nn.ReLU(),
        nn.Flatten(),
        nn.Linear(5 * 22 * 22, 10),
    )


def strip_doc_strings(path):
    """Remove doc strings (may hold source locations) so the file is reproducible.
    Uses the onnx package when available; torch's exporter in 1.13 does not emit
    stack-trace doc strings unless verbose=True, so this is only a safeguard."""
    try:
        import onnx
    except ImportError:
        return False
    m = onnx.load(path)
    m.doc_string = ""
    m.graph.doc_string = ""
    for n in m.graph.node:
        n.doc_string = ""
    onnx.save(m, path)
    return True


ORT_CHECK = r"""
import sys, numpy as np, onnxruntime as ort
path, xs, ys = sys.argv[1], sys.argv[2], sys.argv[3]
x = np.load(xs).astype(np.float32) / np.float32(255.0) - np.float32(0.5)
y = np.load(ys)
s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
out = s.run(["logits"], {"input": x})[0]
print("onnxruntime %s: %d/%d correct on the %d sample images, logits shape %s"
      % (ort.__version__, int((out.argmax(1) == y).sum()), len(y), len(y), out.shape))
"""


def ort_check(onnx_path, xs_path, ys_path):
    try:
        import onnxruntime  # noqa: F401
        cmd = [sys.executable]
    except ImportError:
        other = shutil.which("python3")
        if not other or os.path.realpath(other) == os.path.realpath(sys.executable):
            print("onnxruntime not available: skipping the ONNX check")
            return
        cmd = [other]
    r = subprocess.run(cmd + ["-c", ORT_CHECK, onnx_path, xs_path, ys_path],
                       capture_output=True, text=True)
    if r.returncode == 0:
        print(r.stdout.strip())
    else:
        print("onnxruntime check failed (%s):\n%s" % (cmd[0], r.stderr.strip()))


ZOO_MARKER = "<!-- zoo:begin"  # models/README.md from here on is tools/train.py's zoo table


def write_readme(test_acc, test_correct, torch_version):
    """models/README.md: this model's section, then the zoo section that tools/train.py keeps."""
    path = os.path.join(REPO, "models", "README.md")
    zoo = ""
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
        if ZOO_MARKER in text:
            zoo = "\n" + text[text.index(ZOO_MARKER):]
    with open(path, "w") as f:
        f.write(
            "# Shipped models\n\n"
            "| model | architecture | input convention | test accuracy | reproduce |\n"
            "|---|---|---|---|---|\n"
            "| `%s.onnx` | 3 x [Conv 5x3x3, stride 1, no padding, bias + ReLU], Flatten, Gemm 2420->10 "
            "(ops: Conv, Relu, Flatten, Gemm) | (N,1,28,28) NCHW, x = pixel/255 - 0.5 "
            "(scale 1/255, mean 0.5, std 1; values in [-0.5, 0.5]) | %.2f%% (%d/10000 MNIST test) | "
            "`/usr/bin/python3 tools/train_default_model.py` |\n\n"
            "By CNN-Cert's naming (see the zoo below) this default model's architecture — three conv layers\n"
            "plus the dense layer — is a `4layer` one (`mnist_cnn_4layer_5_3`, 8 680 hidden neurons); it keeps\n"
            "the name it was first shipped under, which the tests and fixtures use.\n\n"
            "Each `.onnx` has a sidecar `.onnx.json` (dataset, scale, mean, std, layout, input_range,\n"
            "test_accuracy) that the C++ loader reads to map raw 0..255 pixels to network inputs.\n"
            "Training is deterministic (fixed seeds, one thread): re-running the command gives a\n"
            "byte-identical ONNX file with the same torch version (trained with torch %s).\n"
            "`data/mnist_test_100.npy` (uint8, (100,1,28,28)) and `data/mnist_test_100.labels.npy`\n"
            "(int64, (100,)) are the first 100 MNIST test images and labels, written by the same script.\n"
            % (NAME, 100.0 * test_acc, test_correct, torch_version) + zoo)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get(
        "CNNCERT_DATA", os.path.join(os.path.dirname(REPO), "shared", "data")))
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    args = ap.parse_args()

    torch.manual_seed(SEED)
    np.random.seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    xtr_u8, ytr, xte_u8, yte = load_mnist(args.data_dir)
    xtr, xte = preprocess(xtr_u8), preprocess(xte_u8)

    model = build_model()
    fit(model, xtr, ytr, xte, yte, args.epochs, LR, BATCH, SEED)

    model.eval()
    test_correct = accuracy(model, xte, yte)
    test_acc = test_correct / len(yte)
    sample_correct = accuracy(model, xte[:100], yte[:100])

    os.makedirs(os.path.join(REPO, "models"), exist_ok=True)
    os.makedirs(os.path.join(REPO, "data"), exist_ok=True)
    onnx_path = os.path.join(REPO, "models", NAME + ".onnx")
    dummy = torch.zeros(1, 1, 28, 28)
    torch.onnx.export(model, dummy, onnx_path, opset_version=13,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      do_constant_folding=True, export_params=True, verbose=False)
    strip_doc_strings(onnx_path)

    sidecar = {
        **sidecar_convention(),
        "test_accuracy": test_acc,
        "notes": ("CNN-Cert-style pure CNN: 3 x [Conv 5 filters 3x3 stride 1 valid + ReLU], "
                  "Flatten, Gemm 2420->10. Input is (pixel/255 - 0.5), NCHW (N,1,28,28). "
                  "Trained by tools/train_default_model.py (Adam lr %g, batch %d, %d epochs, seed %d); "
                  "test_accuracy is on all 10000 MNIST test images."
                  % (LR, BATCH, args.epochs, SEED)),
    }
    with open(onnx_path + ".json", "w") as f:
        json.dump(sidecar, f, indent=2)
        f.write("\n")

    xs_path = os.path.join(REPO, "data", "mnist_test_100.npy")
    ys_path = os.path.join(REPO, "data", "mnist_test_100.labels.npy")
    np.save(xs_path, np.ascontiguousarray(xte_u8[:100], dtype=np.uint8))
    np.save(ys_path, np.ascontiguousarray(yte[:100], dtype=np.int64))

    write_readme(test_acc, test_correct, torch.__version__)

    with open(onnx_path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    print("test accuracy: %d/10000 = %.4f" % (test_correct, test_acc))
    print("sample accuracy (first 100, torch): %d/100" % sample_correct)
    print("wrote %s (%d bytes, sha256 %s)" % (onnx_path, os.path.getsize(onnx_path), sha))
    ort_check(onnx_path, xs_path, ys_path)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Write reference fixtures for cnncert's C++ forward-pass test.

Purpose
    For every shared network in <data-dir>/nets/*.onnx (except the binarized
    gtsrb_bnn_48_bn_maxpool_sign.onnx, whose Sign activations the project does
    not support) and every project model models/*.onnx (convention taken from its
    sidecar models/<name>.onnx.json), run onnxruntime on the first 4 test images
    of the right dataset and write, into tests/fixtures/reference/:

      <stem>.input.npy    float32 (4, *per-sample input shape), i.e. the network's
                          exact input (convention already applied), batch dim dropped
      <stem>.logits.npy   float64 (4, num_classes): onnxruntime's float32 outputs;
                          for graphs ending in Softmax, the Softmax's INPUT (logits)
      <stem>.labels.npy   int64 (4,)
      manifest.json       per stem: onnx path (+ which root it is relative to),
                          input/output tensor names, input_shape, num_classes,
                          dataset, predicted, labels, convention, and the clean
                          accuracy "accuracy_first_n" (MNIST: first 1000 test images
                          from the idx files; CIFAR: the 100 csv images)

    Images: MNIST <data-dir>/images/eran/mnist_test.csv, CIFAR
    <data-dir>/images/eran/cifar10_test.csv (label, values 0..255, HWC interleaved).
    Conventions (see <data-dir>/README.md) are in CONVENTIONS below: x = pixel *
    scale, then (x - mean[c]) / std[c], then arranged in the network's layout
    (NCHW, NHWC, or "flat" = row-major pixel order reshaped to the input shape).
    Measured accuracies are compared with the README's and mismatches reported.

How to run (paths are relative to the repository root, run from anywhere)
    python3 tools/make_reference.py [--data-dir /work/shared/data]

Which python
    The pyenv python3 (3.11) with pip packages onnxruntime, onnx, numpy.
    Idempotent: the same inputs produce byte-identical fixtures.
"""
import argparse
import glob
import json
import os
import re
import sys

import numpy as np

from mnist_data import read_idx
import onnx
import onnxruntime as ort

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(REPO, "tests", "fixtures", "reference")
N_FIXTURE = 4
N_ACC_MNIST = 1000
EXCLUDE = {"gtsrb_bnn_48_bn_maxpool_sign.onnx"}

# Input conventions of the shared networks, from <data-dir>/README.md.
# scale: multiply raw 0..255 pixels; mean/std: per channel, applied after scale.
R01 = 1.0 / 255.0
CONVENTIONS = {
    "mnist_eran_sigmoid_6x200":        ("mnist", R01, [0.0], [1.0], "NCHW"),  # norm inside
    "mnist_fc_256x2":                  ("mnist", R01, [0.0], [1.0], "flat"),
    "mnist_marabou_fc_2x10":           ("mnist", R01, [0.0], [1.0], "NCHW"),
    "mnist_marabou_sigmoid_64_32":     ("mnist", R01, [0.0], [1.0], "flat"),
    "mnist_nln_tansig_200_50":         ("mnist", 1.0, [0.0], [1.0], "flat"),  # raw 0..255
    "mnist_verivital_convnet_maxpool": ("mnist", R01, [0.0], [1.0], "NCHW"),
    "mnist_marabou_cnn_maxpool2":      ("mnist", R01, [0.0], [1.0], "NHWC"),
    "mnist_colt_convmed_0.1":          ("mnist", R01, [0.1307], [0.3081], "NCHW"),
    "cifar_oval21_base_kw":            ("cifar", R01, [0.485, 0.456, 0.406], [0.225, 0.225, 0.225], "NCHW"),
    "cifar_resnet_2b":                 ("cifar", R01, [0.4914, 0.4822, 0.4465], [0.2471, 0.2435, 0.2616], "NCHW"),
    "cifar_abcrown_convsmall_sigmoid": ("cifar", R01, [0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010], "NCHW"),
    "cifar_biasfield_base_allconv":    ("cifar", R01, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], "NCHW"),
}
# Clean accuracies stated in the README (MNIST: first 1000 test images; CIFAR: 300
# images, of which only the first 100 are available here, so CIFAR is not compared).
README_ACC = {
    "mnist_eran_sigmoid_6x200": 971, "mnist_fc_256x2": 978, "mnist_marabou_fc_2x10": 922,
    "mnist_marabou_sigmoid_64_32": 947, "mnist_nln_tansig_200_50": 968,
    "mnist_verivital_convnet_maxpool": 976, "mnist_marabou_cnn_maxpool2": 978,
    "mnist_colt_convmed_0.1": 990,
}


def read_csv(path, h, w, c):
    """Return (images uint8 (N,H,W,C), labels int64 (N,)) from an ERAN csv."""
    a = np.loadtxt(path, delimiter=",", dtype=np.int64)
    assert a.shape[1] == 1 + h * w * c, (path, a.shape)
    return a[:, 1:].astype(np.uint8).reshape(-1, h, w, c), a[:, 0].astype(np.int64)


def load_datasets(data_dir):
    img = os.path.join(data_dir, "images")
    mx, my = read_csv(os.path.join(img, "eran", "mnist_test.csv"), 28, 28, 1)
    cx, cy = read_csv(os.path.join(img, "eran", "cifar10_test.csv"), 32, 32, 3)
    ix = read_idx(os.path.join(img, "mnist", "t10k-images-idx3-ubyte.gz"))[:N_ACC_MNIST]
    iy = read_idx(os.path.join(img, "mnist", "t10k-labels-idx1-ubyte.gz"))[:N_ACC_MNIST]
    ix = ix.reshape(-1, 28, 28, 1)
    iy = iy.astype(np.int64)
    # the csv is the first 100 test images: must agree with the idx file
    assert np.array_equal(mx, ix[:len(mx)]) and np.array_equal(my, iy[:len(my)])
    return {
        "mnist": {"fixture": (mx[:N_FIXTURE], my[:N_FIXTURE]), "acc": (ix, iy),
                  "acc_source": "images/mnist/t10k-*-ubyte.gz (first %d)" % len(iy)},
        "cifar": {"fixture": (cx[:N_FIXTURE], cy[:N_FIXTURE]), "acc": (cx, cy),
                  "acc_source": "images/eran/cifar10_test.csv (all %d)" % len(cy)},
    }


def prepare(images_hwc, scale, mean, std, layout, sample_shape):
    """uint8 (N,H,W,C) -> float32 (N, *sample_shape) in the network's convention."""
    x = images_hwc.astype(np.float64) * scale
    x = (x - np.asarray(mean, np.float64)) / np.asarray(std, np.float64)
    if layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    elif layout not in ("NHWC", "flat"):
        raise ValueError("unknown layout " + layout)
    if layout == "flat" and images_hwc.shape[3] != 1:
        raise ValueError("flat layout only for single-channel images")
    return np.ascontiguousarray(x.reshape((len(x),) + tuple(sample_shape)), dtype=np.float32)


def dims_of(value_info):
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in value_info.type.tensor_type.shape.dim]


def open_session(path):
    """Session whose single requested output is the logits tensor (the Softmax
    input when the graph ends in Softmax). Returns (session, in_name, in_dims,
    out_name, softmax_stripped)."""
    m = onnx.load(path)
    g = m.graph
    inits = {i.name for i in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    assert len(inputs) == 1 and len(g.output) == 1, path
    out_name = g.output[0].name
    stripped = False
    producer = [n for n in g.node if out_name in n.output]
    if producer and producer[0].op_type == "Softmax":
        out_name = producer[0].input[0]
        g.output.append(onnx.helper.make_tensor_value_info(out_name, onnx.TensorProto.FLOAT, None))
        stripped = True
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess, inputs[0].name, dims_of(inputs[0]), out_name, stripped


def run(sess, in_name, out_name, x, fixed_batch1):
    if fixed_batch1:
        return np.concatenate([sess.run([out_name], {in_name: x[i:i + 1]})[0] for i in range(len(x))])
    outs = [sess.run([out_name], {in_name: x[i:i + 500]})[0] for i in range(0, len(x), 500)]
    return np.concatenate(outs)


def collect_networks(data_dir):
    nets = []
    for p in sorted(glob.glob(os.path.join(data_dir, "nets", "*.onnx"))):
        if os.path.basename(p) in EXCLUDE:
            continue
        stem = os.path.basename(p)[:-len(".onnx")]
        if stem not in CONVENTIONS:
            print("warning: no input convention known for %s, skipped" % p)
            continue
        ds, scale, mean, std, layout = CONVENTIONS[stem]
        nets.append(dict(stem=stem, path=p, onnx=os.path.relpath(p, data_dir), onnx_root="shared_data",
                         dataset=ds, scale=scale, mean=mean, std=std, layout=layout))
    for p in sorted(glob.glob(os.path.join(REPO, "models", "*.onnx"))):
        stem = os.path.basename(p)[:-len(".onnx")]
        with open(p + ".json") as f:
            sc = json.load(f)
        nets.append(dict(stem=stem, path=p, onnx=os.path.relpath(p, REPO), onnx_root="repo",
                         dataset=sc["dataset"], scale=sc["scale"], mean=sc["mean"], std=sc["std"],
                         layout=sc["layout"]))
    return nets


def main():
    ap = argparse.ArgumentParser(description="Write reference fixtures for the C++ forward-pass test.")
    ap.add_argument("--data-dir", default=os.environ.get(
        "CNNCERT_DATA", os.path.join(os.path.dirname(REPO), "shared", "data")))
    args = ap.parse_args()
    data_dir = os.path.abspath(args.data_dir)
    data = load_datasets(data_dir)
    os.makedirs(OUT_DIR, exist_ok=True)

    manifest = {}
    rows = []
    mismatches = []
    for net in collect_networks(data_dir):
        stem = net["stem"]
        sess, in_name, in_dims, out_name, stripped = open_session(net["path"])
        sample_shape = [int(d) for d in in_dims[1:]]
        fixed_batch1 = in_dims[0] == 1
        conv = (net["scale"], net["mean"], net["std"], net["layout"], sample_shape)

        fx, fy = data[net["dataset"]]["fixture"]
        x = prepare(fx, *conv)
        logits32 = run(sess, in_name, out_name, x, fixed_batch1)
        num_classes = int(logits32.shape[1])
        assert logits32.shape == (N_FIXTURE, num_classes), (stem, logits32.shape)
        logits = logits32.astype(np.float64)
        pred = logits.argmax(1).astype(np.int64)

        ax, ay = data[net["dataset"]]["acc"]
        apred = run(sess, in_name, out_name, prepare(ax, *conv), fixed_batch1).argmax(1)
        correct = int((apred == ay).sum())

        np.save(os.path.join(OUT_DIR, stem + ".input.npy"), x)
        np.save(os.path.join(OUT_DIR, stem + ".logits.npy"), logits)
        np.save(os.path.join(OUT_DIR, stem + ".labels.npy"), fy.astype(np.int64))
        manifest[stem] = {
            "onnx": net["onnx"],
            "onnx_root": net["onnx_root"],
            "input_name": in_name,
            "output_name": out_name,
            "softmax_stripped": stripped,
            "input_shape": sample_shape,
            "onnx_input_shape": in_dims,
            "num_classes": num_classes,
            "dataset": net["dataset"],
            "predicted": [int(v) for v in pred],
            "labels": [int(v) for v in fy],
            "convention": {"scale": net["scale"], "mean": list(net["mean"]),
                           "std": list(net["std"]), "layout": net["layout"]},
            "accuracy_first_n": {"n": int(len(ay)), "correct": correct,
                                 "source": data[net["dataset"]]["acc_source"]},
        }
        expect = README_ACC.get(stem)
        if expect is not None and expect != correct:
            mismatches.append("%s: measured %d/%d, README says %d" % (stem, correct, len(ay), expect))
        rows.append((stem, "x".join(map(str, in_dims)), net["layout"], "yes" if stripped else "",
                     "%d/%d" % (correct, len(ay)), "" if expect is None else "%d" % expect,
                     " ".join(map(str, pred)), " ".join(map(str, fy))))

    doc = {
        "_about": ("Written by tools/make_reference.py. onnx paths are relative to onnx_root: "
                   "'shared_data' = the shared data directory (e.g. ../shared/data), 'repo' = the "
                   "repository root. <stem>.input.npy holds the exact network inputs (float32, "
                   "(4, *input_shape), convention already applied: x = pixel*scale, (x-mean[c])/std[c], "
                   "then arranged as layout; 'flat' = row-major pixel order reshaped to input_shape). "
                   "<stem>.logits.npy holds onnxruntime's float32 outputs as float64 (4, num_classes); "
                   "when softmax_stripped is true they are the input of the final Softmax."),
        "onnxruntime_version": ort.__version__,
        "networks": manifest,
    }
    text = json.dumps(doc, indent=1)
    # put short lists of numbers/strings on one line for readability
    text = re.sub(r"\[\s*([-0-9.e\"a-zA-Z_,\s]*?)\s*\]",
                  lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text)
    assert json.loads(text) == doc
    with open(os.path.join(OUT_DIR, "manifest.json"), "w") as f:
        f.write(text + "\n")

    hdr = ("network", "onnx input", "layout", "softmax", "acc", "README", "pred[0:4]", "labels")
    widths = [max(len(str(r[i])) for r in rows + [hdr]) for i in range(len(hdr))]
    for r in [hdr] + rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)))
    total = sum(os.path.getsize(p) for p in glob.glob(os.path.join(OUT_DIR, "*")))
    print("wrote %d networks to %s (%d bytes)" % (len(rows), os.path.relpath(OUT_DIR, REPO), total))
    if mismatches:
        print("ACCURACY MISMATCHES vs README:\n  " + "\n  ".join(mismatches))
        sys.exit(1)
    print("all MNIST accuracies match the README")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Train and export a member of the CNN-Cert model families by name (cnncert's model zoo).

Usage (from anywhere; paths are relative to the repository root)
    /usr/bin/python3 tools/train.py NAME [--epochs E] [--out models/] [--seed S]
                                          [--data-dir DIR] [--force]
    /usr/bin/python3 tools/train.py --verify models/NAME.onnx [...]   re-check exported files
    /usr/bin/python3 tools/train.py --readme [--out models/]           rebuild the zoo table only

Names (CNN-Cert's naming convention; ACT is relu (default, no suffix), sigmoid, tanh, atan
(alias arctan); "_bn" before ACT adds BatchNorm2d after every convolution):
    mnist_cnn_{L}layer_{F}_{K}[_bn][_ACT]   pure CNN: L-1 conv layers of F filters KxK, stride 1,
                                            valid padding, ACT after each, Flatten, Dense(10).
                                            As in CNN-Cert, L counts the final dense layer, so
                                            mnist_cnn_4layer_5_3 has 3 conv layers and
                                            5*(26^2+24^2+22^2) = 8680 hidden neurons.
    mnist_cnn_lenet[_nopool|_avgpool][_bn][_ACT]
                                            LeNet: conv 6 5x5 valid, ACT, pool 2x2, conv 16 5x5,
                                            ACT, pool 2x2, Flatten, Dense 120, ACT, Dense 84, ACT,
                                            Dense 10. Pool = MaxPool (default), AveragePool
                                            (_avgpool) or none (_nopool: pooling layers skipped).
    mnist_cnn_7layer[_bn][_ACT]             CNN-Cert's 7-layer general CNN: conv 32 3x3, ACT,
                                            conv 32 3x3, ACT, maxpool 2, conv 64 3x3, ACT,
                                            conv 64 3x3, ACT, maxpool 2, Flatten, Dense 200, ACT,
                                            Dense 200, ACT, Dense 10 (valid padding).
    mnist_resnet_{B}[_bn][_ACT]             conv 8 3x3 pad 1, ACT, then B residual blocks
                                            (conv 8 3x3 pad 1, ACT, conv 8 3x3 pad 1, identity
                                            shortcut Add, ACT), Flatten, Dense(10).
    mnist_{L}layer_fc_{N}[_ACT]             MLP: Flatten, L-1 hidden Dense(N)+ACT, Dense(10).

Outputs
    OUT/NAME.onnx        ONNX opset 13, input "input" (N,1,28,28) float32, output "logits" (N,10),
                         dynamic batch; explicit BatchNormalization / Atan / MaxPool / AveragePool /
                         Add nodes where the architecture has them; no Softmax.
    OUT/NAME.onnx.json   sidecar: input convention (pixel/255 - 0.5, as CNN-Cert), test accuracy
                         (all 10000 MNIST test images, measured with onnxruntime on the exported
                         file when available), architecture, neuron/parameter counts, command.
    OUT/README.md        the zoo table between the "zoo:begin"/"zoo:end" markers is regenerated from
                         every sidecar written by this script; the rest of the file is kept.

Which python
    Debian's /usr/bin/python3 with python3-torch (1.13) and numpy for training/export. MNIST is read
    from <data-dir>/images/mnist/*-ubyte.gz (idx, parsed with numpy). The exported file is checked
    with onnxruntime + onnx, imported directly or through another `python3` on PATH (e.g. pyenv):
    max |torch - onnxruntime| over all 10000 test logits must be < 1e-4.

Determinism
    Fixed seeds, torch.use_deterministic_algorithms(True), one CPU thread, numpy-generated shuffling:
    re-running a command produces a byte-identical ONNX file with the same torch version.
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np

from mnist_data import MEAN, SCALE, STD, load_mnist, preprocess, sidecar_convention

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = 20240601
BATCH = 128
LR = 1e-3
TOL = 1e-4
TRAINER = "tools/train.py"
ACTS = ("relu", "sigmoid", "tanh", "atan")

NAME_RE = re.compile(
    r"^mnist_(?:"
    r"cnn_(?P<L>\d+)layer_(?P<F>\d+)_(?P<K>\d+)"
    r"|cnn_lenet(?P<pool>_nopool|_avgpool)?"
    r"|cnn_(?P<seven>7layer)"
    r"|resnet_(?P<B>\d+)"
    r"|(?P<FL>\d+)layer_fc_(?P<N>\d+)"
    r")(?P<bn>_bn)?(?:_(?P<act>relu|sigmoid|tanh|atan|arctan))?$")


# --------------------------------------------------------------------------- names


def parse_name(name):
    """Name -> spec dict; raises ValueError with the accepted grammar on a bad name."""
    m = NAME_RE.match(name)
    if not m:
        raise ValueError(
            "unknown model name %r; expected one of mnist_cnn_{L}layer_{F}_{K}[_bn][_ACT], "
            "mnist_cnn_lenet[_nopool|_avgpool][_bn][_ACT], mnist_cnn_7layer[_bn][_ACT], "
            "mnist_resnet_{B}[_bn][_ACT], mnist_{L}layer_fc_{N}[_ACT] with ACT in "
            "relu|sigmoid|tanh|atan|arctan" % name)
    g = m.groupdict()
    act = g["act"] or "relu"
    if act == "arctan":
        act = "atan"
    spec = {"name": name, "act": act, "bn": bool(g["bn"])}
    if g["L"]:
        spec.update(family="cnn", layers=int(g["L"]), filters=int(g["F"]), kernel=int(g["K"]))
        if spec["layers"] < 2 or spec["filters"] < 1 or spec["kernel"] < 1:
            raise ValueError("%s: need L >= 2 (L-1 conv layers + dense), F >= 1, K >= 1" % name)
        side = 28 - (spec["layers"] - 1) * (spec["kernel"] - 1)
        if side < 1:
            raise ValueError("%s: %d valid %dx%d convolutions do not fit a 28x28 image"
                             % (name, spec["layers"] - 1, spec["kernel"], spec["kernel"]))
    elif g["B"]:
        spec.update(family="resnet", blocks=int(g["B"]))
        if spec["blocks"] < 1:
            raise ValueError("%s: need at least one residual block" % name)
    elif g["FL"]:
        spec.update(family="fc", layers=int(g["FL"]), units=int(g["N"]))
        if spec["bn"]:
            raise ValueError("%s: _bn applies to convolutional families only" % name)
        if spec["layers"] < 1 or spec["units"] < 1:
            raise ValueError("%s: need L >= 1 and N >= 1" % name)
    elif g["seven"]:
        spec.update(family="7layer")
    else:
        spec.update(family="lenet", pool={None: "max", "_nopool": "none",
                                          "_avgpool": "avg"}[g["pool"]])
    return spec


def default_epochs(spec):
    """Epochs per family (ReLU reaches ~98% within a few minutes on one CPU thread), times 2 for
    tanh/atan and 3 for sigmoid, which train more slowly with the same optimizer."""
    base = {"7layer": 1, "resnet": 2, "fc": 20}.get(spec["family"], 3)
    return base * {"relu": 1, "tanh": 2, "atan": 2, "sigmoid": 3}[spec["act"]]


# --------------------------------------------------------------------------- data


# --------------------------------------------------------------------------- models


def build_model(spec):
    import torch
    import torch.nn as nn

    class Atan(nn.Module):
        """Exports as an ONNX Atan node."""

        def forward(self, x):
            return torch.atan(x)

    def act():
        return {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "atan": Atan}[spec["act"]]()

    def conv(cin, cout, k, pad=0):
        layers = [nn.Conv2d(cin, cout, kernel_size=k, stride=1, padding=pad, bias=True)]
        if spec["bn"]:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(act())
        return layers

    class Block(nn.Module):
        """conv-act-conv + identity shortcut (explicit Add), then act."""

        def __init__(self, ch):
            super().__init__()
            second = [nn.Conv2d(ch, ch, kernel_size=3, stride=1, padding=1, bias=True)]
            if spec["bn"]:
                second.append(nn.BatchNorm2d(ch))
            self.body = nn.Sequential(*conv(ch, ch, 3, 1), *second)
            self.out = act()

        def forward(self, x):
            return self.out(self.body(x) + x)

    fam = spec["family"]
    if fam == "cnn":
        f, k, n = spec["filters"], spec["kernel"], spec["layers"] - 1
        layers, cin = [], 1
        for _ in range(n):
            layers += conv(cin, f, k)
            cin = f
        side = 28 - n * (k - 1)
        layers += [nn.Flatten(), nn.Linear(f * side * side, 10)]
        arch = ("%d x [Conv %d filters %dx%d, stride 1, valid%s + %s], Flatten, Dense %d->10"
                % (n, f, k, k, ", BatchNorm" if spec["bn"] else "", spec["act"], f * side * side))
    elif fam == "lenet":
        pool = {"max": lambda: [nn.MaxPool2d(2)], "avg": lambda: [nn.AvgPool2d(2, count_include_pad=False)],
                "none": lambda: []}[spec["pool"]]
        side = 4 if spec["pool"] != "none" else 20
        layers = (conv(1, 6, 5) + pool() + conv(6, 16, 5) + pool()
                  + [nn.Flatten(), nn.Linear(16 * side * side, 120), act(),
                     nn.Linear(120, 84), act(), nn.Linear(84, 10)])
        ptxt = {"max": ", MaxPool 2x2", "avg": ", AveragePool 2x2", "none": ""}[spec["pool"]]
        bn = " + BatchNorm" if spec["bn"] else ""
        arch = ("LeNet: Conv 6 5x5 valid%s + %s%s, Conv 16 5x5 valid%s + %s%s, Flatten, "
                "Dense %d->120 + %s, Dense 120->84 + %s, Dense 84->10"
                % (bn, spec["act"], ptxt, bn, spec["act"], ptxt, 16 * side * side,
                   spec["act"], spec["act"]))
    elif fam == "7layer":
        layers = (conv(1, 32, 3) + conv(32, 32, 3) + [nn.MaxPool2d(2)]
                  + conv(32, 64, 3) + conv(64, 64, 3) + [nn.MaxPool2d(2)]
                  + [nn.Flatten(), nn.Linear(64 * 4 * 4, 200), act(),
                     nn.Linear(200, 200), act(), nn.Linear(200, 10)])
        bn = " + BatchNorm" if spec["bn"] else ""
        a = spec["act"]
        arch = ("Conv 32 3x3%s + %s, Conv 32 3x3%s + %s, MaxPool 2x2, Conv 64 3x3%s + %s, "
                "Conv 64 3x3%s + %s, MaxPool 2x2, Flatten, Dense 1024->200 + %s, "
                "Dense 200->200 + %s, Dense 200->10 (valid padding)"
                % (bn, a, bn, a, bn, a, bn, a, a, a))
    elif fam == "resnet":
        layers = conv(1, 8, 3, 1) + [Block(8) for _ in range(spec["blocks"])]
        layers += [nn.Flatten(), nn.Linear(8 * 28 * 28, 10)]
        bn = " + BatchNorm" if spec["bn"] else ""
        a = spec["act"]
        arch = ("Conv 8 3x3 pad 1%s + %s, %d x residual block [Conv 8 3x3 pad 1%s + %s, "
                "Conv 8 3x3 pad 1%s, Add identity, %s], Flatten, Dense 6272->10"
                % (bn, a, spec["blocks"], bn, a, bn, a))
    else:  # fc
        layers, din = [nn.Flatten()], 784
        for _ in range(spec["layers"] - 1):
            layers += [nn.Linear(din, spec["units"]), act()]
            din = spec["units"]
        layers.append(nn.Linear(din, 10))
        arch = ("Flatten, %d x [Dense %d + %s], Dense %d->10"
                % (spec["layers"] - 1, spec["units"], spec["act"], din)
                if spec["layers"] > 1 else "Flatten, Dense 784->10")
    return nn.Sequential(*layers), arch


def count_neurons(model):
    """Number of activation outputs (ReLU/Sigmoid/Tanh/Atan) for one 1x28x28 input."""
    import torch
    import torch.nn as nn
    total = [0]
    hooks = []
    for mod in model.modules():
        if isinstance(mod, (nn.ReLU, nn.Sigmoid, nn.Tanh)) or type(mod).__name__ == "Atan":
            hooks.append(mod.register_forward_hook(
                lambda m, i, o: total.__setitem__(0, total[0] + o[0].numel())))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return total[0]


# --------------------------------------------------------------------------- train / export


def export_onnx(model, path):
    """Opset 13, dynamic batch. TrainingMode.PRESERVE with the model in eval mode skips the
    exporter's eval-mode Conv+BN fusion, so BatchNormalization nodes stay explicit (inference
    form: one output, running statistics)."""
    import warnings
    import torch
    model.eval()
    with warnings.catch_warnings():
        # The exporter warns about constant folding whenever training != EVAL, even though the
        # model is in eval mode here (nothing trainable is folded): silence that one warning.
        warnings.filterwarnings("ignore", message=".*constant folding be turned off.*")
        torch.onnx.export(model, torch.zeros(1, 1, 28, 28), path, opset_version=13,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          training=torch.onnx.TrainingMode.PRESERVE,
                          do_constant_folding=True, export_params=True, verbose=False)


# --------------------------------------------------------------------------- onnxruntime check

ORT_CHECK = r"""
import json, sys, numpy as np
import onnx, onnxruntime as ort
path, xs, ys, ref, scale, mean, std = sys.argv[1:8]
m = onnx.load(path)
ops = []
for n in m.graph.node:
    if n.op_type not in ops:
        ops.append(n.op_type)
docs = sum(1 for n in m.graph.node if n.doc_string) + (1 if m.doc_string or m.graph.doc_string else 0)
x = np.load(xs).astype(np.float32) * np.float32(float(scale))
x = (x - np.float32(float(mean))) / np.float32(float(std))
y = np.load(ys)
s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
assert [i.name for i in s.get_inputs()] == ["input"], s.get_inputs()
assert [o.name for o in s.get_outputs()] == ["logits"], s.get_outputs()
out = np.concatenate([s.run(["logits"], {"input": x[i:i + 1000]})[0] for i in range(0, len(x), 1000)])
r = {"ort_version": ort.__version__, "opset": [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")][0],
     "ops": ops, "node_count": len(m.graph.node), "doc_strings": docs,
     "producer": "%s %s" % (m.producer_name, m.producer_version),
     "correct": int((out.argmax(1) == y).sum()), "count": int(len(y)), "shape": list(out.shape)}
if ref != "-":
    r["max_abs_diff"] = float(np.abs(out - np.load(ref)).max())
print(json.dumps(r))
"""


def ort_python():
    """A python command with onnxruntime + onnx, or None."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        return [sys.executable]
    except ImportError:
        pass
    for cand in (shutil.which("python3"), os.path.expanduser("~/.pyenv/shims/python3")):
        if not cand or not os.path.exists(cand):
            continue
        if os.path.realpath(cand) == os.path.realpath(sys.executable):
            continue
        r = subprocess.run([cand, "-c", "import onnx, onnxruntime"], capture_output=True)
        if r.returncode == 0:
            return [cand]
    return None


def ort_check(onnx_path, xte_u8, yte, ref_logits=None):
    """Run the exported file with onnxruntime on all test images (sidecar convention); returns the
    result dict or None when onnxruntime is unavailable. Raises if the check itself fails."""
    py = ort_python()
    if py is None:
        print("onnxruntime/onnx not available: skipping the ONNX check")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        xs, ys = os.path.join(tmp, "x.npy"), os.path.join(tmp, "y.npy")
        np.save(xs, xte_u8)
        np.save(ys, yte)
        ref = "-"
        if ref_logits is not None:
            ref = os.path.join(tmp, "ref.npy")
            np.save(ref, ref_logits)
        r = subprocess.run(py + ["-c", ORT_CHECK, onnx_path, xs, ys, ref,
                                 repr(SCALE), repr(MEAN), repr(STD)],
                           capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("onnxruntime check of %s failed (%s):\n%s" % (onnx_path, py[0], r.stderr))
    return json.loads(r.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- README

README_BEGIN = "<!-- zoo:begin (generated by tools/train.py from the sidecars; do not edit) -->"
README_END = "<!-- zoo:end -->"


def write_readme(out_dir):
    rows = []
    for fn in sorted(os.listdir(out_dir)):
        if not fn.endswith(".onnx.json"):
            continue
        with open(os.path.join(out_dir, fn)) as f:
            sc = json.load(f)
        if sc.get("trainer") != TRAINER:
            continue
        acc = sc["test_accuracy"]
        rows.append("| `%s` | %s | %s | %d | %d | %s | %.2f%% | `%s` |" % (
            fn[:-len(".json")], sc["architecture"], ", ".join(sc.get("onnx_ops", [])),
            sc["activation_neurons"], sc["parameters"], sc.get("epochs", "?"), 100.0 * acc,
            sc["command"]))
    table = "\n".join([
        README_BEGIN,
        "## Model zoo (CNN-Cert families)",
        "",
        "Trained and exported by `tools/train.py` (`/usr/bin/python3 tools/train.py --help` gives "
        "the naming grammar: `mnist_cnn_{L}layer_{F}_{K}[_bn][_ACT]`, "
        "`mnist_cnn_lenet[_nopool|_avgpool][_bn][_ACT]`, `mnist_cnn_7layer[_bn][_ACT]`, "
        "`mnist_resnet_{B}[_bn][_ACT]`, `mnist_{L}layer_fc_{N}[_ACT]`, ACT = relu (default), "
        "sigmoid, tanh, atan). Every model takes (N,1,28,28) NCHW input x = pixel/255 - 0.5 (the "
        "sidecar convention above) and outputs 10 logits (no softmax). Adam (lr 1e-3), batch 128, "
        "seed 20240601, one CPU thread, deterministic: re-running a command gives a byte-identical "
        "ONNX file with the same torch version.",
        "",
        "* Naming follows CNN-Cert: `mnist_cnn_{L}layer_{F}_{K}` has L-1 conv layers plus the final "
        "dense layer (`mnist_cnn_4layer_5_3`: 5*(26^2+24^2+22^2) = 8680 hidden neurons, the "
        "architecture of `mnist_cnn_3layer_5_3` above, trained for fewer epochs); "
        "`mnist_{L}layer_fc_{N}` has L-1 hidden layers of N units.",
        "* *neurons*: outputs of all activation layers (the hidden neurons CNN-Cert counts; pooling "
        "outputs not counted). *parameters*: trainable weights and biases (BatchNorm's scale and "
        "shift included; `cnncert info` shows 30 fewer for the `_bn` model after folding BN into "
        "the convolutions).",
        "* *test accuracy*: all 10000 MNIST test images, measured with onnxruntime on the exported "
        "file with the sidecar convention (equal to the PyTorch accuracy; max |PyTorch - "
        "onnxruntime| logit difference < 1e-4). Re-check every file with "
        "`python3 tools/train.py --verify models/*.onnx` (a python with onnx + onnxruntime) or with "
        "`build/cnncert predict models/NAME.onnx ../shared/data/images/mnist/t10k-images-idx3-ubyte.gz -q`.",
        "* Non-ReLU models train with 2x (tanh, atan) or 3x (sigmoid) the epochs of the ReLU model.",
        "",
        "| model | architecture | ONNX ops | neurons | parameters | epochs | test accuracy | reproduce |",
        "|---|---|---|---|---|---|---|---|",
    ] + rows + ["", README_END])
    path = os.path.join(out_dir, "README.md")
    text = ""
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
    if README_BEGIN in text and README_END in text:
        a = text.index(README_BEGIN)
        b = text.index(README_END) + len(README_END)
        text = text[:a] + table + text[b:]
    else:
        text = (text.rstrip("\n") + "\n\n" if text else "# Shipped models\n\n") + table + "\n"
    with open(path, "w") as f:
        f.write(text)
    print("updated %s (%d zoo rows)" % (path, len(rows)))


# --------------------------------------------------------------------------- main


def rel(path):
    p = os.path.relpath(os.path.abspath(path), REPO)
    return p if not p.startswith("..") else os.path.abspath(path)


def train_one(args):
    import torch
    from torch_train import fit, logits

    spec = parse_name(args.name)
    epochs = args.epochs if args.epochs is not None else default_epochs(spec)
    out_dir = args.out
    os.makedirs(out_dir, exist_ok=True)
    onnx_path = os.path.join(out_dir, spec["name"] + ".onnx")
    side_path = onnx_path + ".json"
    if os.path.exists(side_path) and not args.force:
        with open(side_path) as f:
            try:
                prev = json.load(f)
            except ValueError:
                prev = {}
        if prev.get("trainer") != TRAINER:
            sys.exit("%s exists and was not written by %s (e.g. the default model of "
                     "tools/train_default_model.py): refusing to overwrite it; use --force or "
                     "another --out" % (side_path, TRAINER))

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    xtr_u8, ytr, xte_u8, yte = load_mnist(args.data_dir)
    xtr, xte = preprocess(xtr_u8), preprocess(xte_u8)

    model, arch = build_model(spec)
    neurons = count_neurons(model)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print("%s: %s\n  %d activation neurons, %d parameters, %d epochs"
          % (spec["name"], arch, neurons, params, epochs))

    train_s = fit(model, xtr, ytr, xte, yte, epochs, LR, BATCH, args.seed, indent="  ")

    model.eval()
    ref = logits(model, xte)
    torch_correct = int((ref.argmax(1) == yte).sum())
    export_onnx(model, onnx_path)

    chk = ort_check(onnx_path, xte_u8, yte, ref)
    if chk is not None:
        if not chk["max_abs_diff"] < TOL:
            sys.exit("%s: max |torch - onnxruntime| = %.3g >= %g" % (onnx_path, chk["max_abs_diff"], TOL))
        correct = chk["correct"]
        if correct != torch_correct:
            print("  note: onnxruntime gets %d correct, torch %d (ties / rounding)"
                  % (correct, torch_correct))
        if spec["bn"] and "BatchNormalization" not in chk["ops"]:
            sys.exit("%s: BatchNormalization was folded away by the exporter" % onnx_path)
        if spec["act"] == "atan" and "Atan" not in chk["ops"]:
            sys.exit("%s: no Atan node in the exported graph" % onnx_path)
        measured = "measured with onnxruntime %s on the exported file" % chk["ort_version"]
    else:
        correct = torch_correct
        measured = "measured with PyTorch (onnxruntime was not available)"

    cmd = "/usr/bin/python3 tools/train.py %s" % spec["name"]
    if args.epochs is not None and args.epochs != default_epochs(spec):
        cmd += " --epochs %d" % epochs
    if args.seed != SEED:
        cmd += " --seed %d" % args.seed
    sidecar = {
        **sidecar_convention(),
        "test_accuracy": correct / len(yte),
        "architecture": arch,
        "activation": spec["act"],
        "activation_neurons": neurons,
        "parameters": params,
        "onnx_ops": chk["ops"] if chk else [],
        "trainer": TRAINER,
        "command": cmd,
        "epochs": epochs,
        "seed": args.seed,
        "notes": ("CNN-Cert family model %s. Input is (pixel/255 - 0.5), NCHW (N,1,28,28); output "
                  "10 logits (no softmax). Trained by %s (Adam lr %g, batch %d, %d epochs, seed %d, "
                  "torch %s, one thread, deterministic); test_accuracy is on all 10000 MNIST test "
                  "images, %s." % (spec["name"], TRAINER, LR, BATCH, epochs, args.seed,
                                   torch.__version__, measured)),
    }
    with open(side_path, "w") as f:
        json.dump(sidecar, f, indent=2)
        f.write("\n")
    if not args.no_readme:
        write_readme(out_dir)

    with open(onnx_path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    print("  test accuracy %d/10000 = %.4f (torch %d); training %.1fs"
          % (correct, correct / len(yte), torch_correct, train_s))
    if chk:
        print("  onnxruntime: max |diff| %.3g, ops %s, %d doc strings, producer %s"
              % (chk["max_abs_diff"], ",".join(chk["ops"]), chk["doc_strings"], chk["producer"]))
    print("  wrote %s (%d bytes, sha256 %s) and %s"
          % (rel(onnx_path), os.path.getsize(onnx_path), sha, os.path.basename(side_path)))


def verify(args):
    _, _, xte_u8, yte = load_mnist(args.data_dir)
    bad = 0
    for path in args.verify:
        chk = ort_check(path, xte_u8, yte)
        if chk is None:
            sys.exit(1)
        sc_path = path + ".json"
        want = None
        if os.path.exists(sc_path):
            with open(sc_path) as f:
                want = json.load(f).get("test_accuracy")
        got = chk["correct"] / chk["count"]
        ok = want is None or abs(got - want) < 0.5 / chk["count"]
        bad += not ok
        print("%s: %d/%d = %.4f (sidecar %s) %s; ops %s" % (
            path, chk["correct"], chk["count"], got, want, "ok" if ok else "MISMATCH",
            ",".join(chk["ops"])))
    sys.exit(1 if bad else 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("name", nargs="?", help="model name, e.g. mnist_cnn_4layer_5_3_tanh")
    ap.add_argument("--epochs", type=int, default=None,
                    help="training epochs (default: 1 for 7layer, 2 for resnet, 20 for fc, else 3; x2 for tanh/atan, x3 for sigmoid)")
    ap.add_argument("--out", default=os.path.join(REPO, "models"), help="output folder (models/)")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--data-dir", default=os.environ.get(
        "CNNCERT_DATA", os.path.join(os.path.dirname(REPO), "shared", "data")))
    ap.add_argument("--force", action="store_true",
                    help="overwrite an existing model not written by this script")
    ap.add_argument("--no-readme", action="store_true", help="do not update OUT/README.md")
    ap.add_argument("--readme", action="store_true", help="only rebuild the zoo table in OUT/README.md")
    ap.add_argument("--verify", nargs="+", metavar="ONNX",
                    help="only check exported files with onnxruntime against their sidecar accuracy")
    args = ap.parse_args()
    if args.verify:
        verify(args)
    elif args.readme:
        write_readme(args.out)
    elif args.name:
        try:
            parse_name(args.name)
        except ValueError as e:
            ap.error(str(e))
        train_one(args)
    else:
        ap.error("give a model NAME (or --verify / --readme)")


if __name__ == "__main__":
    main()

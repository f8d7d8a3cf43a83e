#!/usr/bin/env python3
"""Write the ONNX op fixtures of tests/cpu/test_onnx_ops.cpp (tests/fixtures/ops/).

Purpose
    Small models, built here with the onnx package, that use the ops and input forms real
    benchmark networks need beyond the CNN-Cert families: Elu, Softplus, Gelu (opset 20, both
    forms), PyTorch's exported GELU (x * 0.5 * (1 + Erf(x / sqrt 2))) and SiLU (x * Sigmoid(x)),
    Concat along channels (with a constant operand), ConvTranspose (strides, pads,
    output_padding, groups, dilations), and inputs without a batch dimension (rank 1 and rank 2).
    For each model <stem> it writes:

      <stem>.onnx          the model
      <stem>.input.npy     float32 (8, *per-sample input shape)
      <stem>.logits.npy    float64 (8, outputs): onnxruntime's float32 outputs (one sample per run
                           for the models without a batch dimension or with a constant Concat
                           operand, which has batch 1)

    The C++ test imports each model, runs cnncert's forward pass on the inputs and compares with
    onnxruntime's outputs (the independent reference), then checks bounds against samples.

How to run
    python3 tools/make_op_fixtures.py     (needs numpy, onnx, onnxruntime; writes byte-identical
                                           files for the same package versions)
"""
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "ops")
RNG = np.random.default_rng(20261201)


def w(name, *shape, scale=0.5):
    return numpy_helper.from_array((RNG.standard_normal(shape) * scale).astype(np.float32), name)


def const(name, values):
    return numpy_helper.from_array(np.asarray(values, dtype=np.float32), name)


def model(nodes, inits, in_shape, out_shape, opset=13):
    g = helper.make_graph(nodes, "fixture", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="cnncert-fixtures")
    m.ir_version = 9 if opset >= 20 else 8
    onnx.checker.check_model(m, full_check=True)
    return m


def elu_softplus():
    nodes = [helper.make_node("Gemm", ["x", "W1", "B1"], ["h1"], transB=1),
             helper.make_node("Elu", ["h1"], ["a1"], alpha=0.7),
             helper.make_node("Gemm", ["a1", "W2", "B2"], ["h2"], transB=1),
             helper.make_node("Softplus", ["h2"], ["a2"]),
             helper.make_node("Gemm", ["a2", "W3", "B3"], ["y"], transB=1)]
    inits = [w("W1", 10, 6), w("B1", 10), w("W2", 8, 10), w("B2", 8), w("W3", 4, 8), w("B3", 4)]
    return model(nodes, inits, ["N", 6], ["N", 4]), (6,)


def gelu_opset20():
    nodes = [helper.make_node("Gemm", ["x", "W1", "B1"], ["h1"], transB=1),
             helper.make_node("Gelu", ["h1"], ["a1"]),
             helper.make_node("Gemm", ["a1", "W2", "B2"], ["h2"], transB=1),
             helper.make_node("Gelu", ["h2"], ["a2"], approximate="tanh"),
             helper.make_node("Gemm", ["a2", "W3", "B3"], ["y"], transB=1)]
    inits = [w("W1", 10, 6, scale=1.0), w("B1", 10), w("W2", 8, 10), w("B2", 8), w("W3", 4, 8), w("B3", 4)]
    return model(nodes, inits, ["N", 6], ["N", 4], opset=20), (6,)


def torch_gelu_silu():
    # As torch.onnx (TorchScript exporter, opset < 20) writes nn.GELU() and nn.SiLU().
    nodes = [helper.make_node("Gemm", ["x", "W1", "B1"], ["h1"], transB=1),
             helper.make_node("Div", ["h1", "sqrt2"], ["d"]),
             helper.make_node("Erf", ["d"], ["e"]),
             helper.make_node("Add", ["e", "one"], ["e1"]),
             helper.make_node("Mul", ["h1", "e1"], ["m"]),
             helper.make_node("Mul", ["m", "half"], ["a1"]),
             helper.make_node("Gemm", ["a1", "W2", "B2"], ["h2"], transB=1),
             helper.make_node("Sigmoid", ["h2"], ["s"]),
             helper.make_node("Mul", ["h2", "s"], ["a2"]),
             helper.make_node("Gemm", ["a2", "W3", "B3"], ["y"], transB=1)]
    inits = [w("W1", 10, 6, scale=1.0), w("B1", 10), w("W2", 8, 10), w("B2", 8), w("W3", 4, 8), w("B3", 4),
             const("sqrt2", 1.4142135381698608), const("one", 1.0), const("half", 0.5)]
    return model(nodes, inits, ["N", 6], ["N", 4]), (6,)


def concat_convtranspose():
    # (2, 5, 5) → Conv 3 → Relu ┐
    #           → Conv 2 ───────┴ Concat(channels, + a constant channel) (6, 5, 5)
    # → ConvTranspose stride 2, pads 1, output_padding 1, 2 groups → (4, 10, 10) → Relu
    # → ConvTranspose dilation 2 → (2, 12, 12) → Flatten → Gemm 5
    nodes = [helper.make_node("Conv", ["x", "C1", "c1"], ["h1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["h1"], ["r1"]),
             helper.make_node("Conv", ["x", "C2", "c2"], ["h2"], pads=[1, 1, 1, 1]),
             helper.make_node("Concat", ["r1", "h2", "K"], ["cat"], axis=1),
             helper.make_node("ConvTranspose", ["cat", "T1", "t1"], ["u1"], strides=[2, 2], pads=[1, 1, 1, 1],
                              output_padding=[1, 1], group=2),
             helper.make_node("Relu", ["u1"], ["r2"]),
             helper.make_node("ConvTranspose", ["r2", "T2"], ["u2"], dilations=[2, 2]),
             helper.make_node("Flatten", ["u2"], ["f"]),
             helper.make_node("Gemm", ["f", "W", "B"], ["y"], transB=1)]
    inits = [w("C1", 3, 2, 3, 3), w("c1", 3), w("C2", 2, 2, 3, 3), w("c2", 2),
             numpy_helper.from_array((RNG.standard_normal((1, 1, 5, 5))).astype(np.float32), "K"),
             w("T1", 6, 2, 3, 3), w("t1", 4), w("T2", 4, 2, 2, 2), w("W", 5, 2 * 12 * 12, scale=0.1), w("B", 5)]
    return model(nodes, inits, ["N", 2, 5, 5], ["N", 5]), (2, 5, 5)


def rank1_mlp():
    # No batch dimension: x is [5], as some VNN-COMP networks are exported.
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h1"]),
             helper.make_node("Add", ["h1", "B1"], ["a1"]),
             helper.make_node("Relu", ["a1"], ["r1"]),
             helper.make_node("MatMul", ["r1", "W2"], ["h2"]),
             helper.make_node("Add", ["h2", "B2"], ["y"])]
    inits = [w("W1", 5, 12), w("B1", 12), w("W2", 12, 3), w("B2", 3)]
    return model(nodes, inits, [5], [3]), (5,)


def rank2_nobatch():
    # No batch and no channel dimension: x is a (4, 6) matrix, flattened into one row.
    nodes = [helper.make_node("Flatten", ["x"], ["f"], axis=0),
             helper.make_node("Gemm", ["f", "W1", "B1"], ["h1"], transB=1),
             helper.make_node("Tanh", ["h1"], ["t1"]),
             helper.make_node("Gemm", ["t1", "W2", "B2"], ["h2"], transB=1),
             helper.make_node("Reshape", ["h2", "shape"], ["y"])]
    inits = [w("W1", 9, 24), w("B1", 9), w("W2", 3, 9), w("B2", 3),
             numpy_helper.from_array(np.asarray([3], dtype=np.int64), "shape")]
    return model(nodes, inits, [4, 6], [3]), (4, 6)


FIXTURES = {
    "elu_softplus": (elu_softplus, "batch"),
    "gelu_opset20": (gelu_opset20, "batch"),
    "torch_gelu_silu": (torch_gelu_silu, "batch"),
    "concat_convtranspose": (concat_convtranspose, "one"),  # a constant Concat operand has batch 1
    "rank1_mlp": (rank1_mlp, "none"),
    "rank2_nobatch": (rank2_nobatch, "none"),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for stem, (make, batching) in FIXTURES.items():
        m, per_sample = make()
        path = os.path.join(OUT, stem + ".onnx")
        onnx.save(m, path)
        x = (RNG.standard_normal((8,) + per_sample) * 1.5).astype(np.float32)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        if batching == "batch":
            y = sess.run(None, {"x": x})[0]
        elif batching == "one":
            y = np.concatenate([sess.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])
        else:
            y = np.stack([sess.run(None, {"x": x[i]})[0] for i in range(len(x))])
        y = y.reshape(len(x), -1).astype(np.float64)
        np.save(os.path.join(OUT, stem + ".input.npy"), x)
        np.save(os.path.join(OUT, stem + ".logits.npy"), y)
        print(f"{stem}: input {x.shape}, logits {y.shape}, |y| max {np.abs(y).max():.3g}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes the seed corpora and dictionaries of the libFuzzer targets (tests/fuzz/).

    tools/make_fuzz_seeds.py [--out tests/fuzz]

Standard library only (no onnx, no numpy): the ONNX models are encoded with a small protobuf
writer, the .npy files with their documented header format. Nothing is downloaded; the only
inputs are files of this repository (a few small models under models/, two images of
data/mnist_test_100.npy). The output is deterministic, so re-running it leaves the committed
corpora unchanged.

Corpus layout: tests/fuzz/corpus/<target>/<name>, dictionaries tests/fuzz/dict/<target>.dict.
Input conventions of the targets (see their sources):
  fuzz_npy        images .npy, optionally followed by a labels .npy (split at the 2nd magic)
  fuzz_mnist_idx  images idx, optionally followed by b"LABELS::" and the labels idx
  others          the file as is
"""
import argparse
import gzip
import io
import os
import shutil
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Shipped models small enough to seed with (the rest are 180 KB .. 1.3 MB).
SHIPPED_MODELS = ["mnist_3layer_fc_20.onnx", "mnist_cnn_3layer_5_3.onnx", "mnist_cnn_4layer_5_3_bn.onnx"]
SHIPPED_SIDECARS = ["mnist_3layer_fc_20.onnx.json", "mnist_cnn_4layer_5_3_bn.onnx.json"]

# ---- protobuf / ONNX ---------------------------------------------------------------------------


def varint(v):
    if v < 0:
        v += 1 << 64
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def key(field, wire):
    return varint((field << 3) | wire)


def f_varint(field, v):
    return key(field, 0) + varint(v)


def f_bytes(field, b):
    if isinstance(b, str):
        b = b.encode()
    return key(field, 2) + varint(len(b)) + b


def f_f32(field, v):
    return key(field, 5) + struct.pack("<f", v)


FLOAT, UINT8, INT8, INT32, INT64, FLOAT16, DOUBLE = 1, 2, 3, 6, 7, 10, 11


def tensor(name, dims, values, dtype=FLOAT, storage="raw"):
    """TensorProto; storage: raw (raw_data), typed (float_data/int64_data/double_data/int32_data)."""
    b = b"".join(f_varint(1, d) for d in dims) + f_varint(2, dtype) + f_bytes(8, name)
    if storage == "raw":
        fmt = {FLOAT: "<f", DOUBLE: "<d", INT64: "<q", INT32: "<i", UINT8: "<B", INT8: "<b", FLOAT16: "<e"}[dtype]
        b += f_bytes(9, b"".join(struct.pack(fmt, v) for v in values))
    elif dtype == FLOAT:
        b += f_bytes(4, b"".join(struct.pack("<f", v) for v in values))  # packed float_data
    elif dtype == INT64:
        b += f_bytes(7, b"".join(varint(int(v)) for v in values))  # packed int64_data
    elif dtype == DOUBLE:
        b += f_bytes(10, b"".join(struct.pack("<d", v) for v in values))  # packed double_data
    elif dtype in (INT32, INT8, UINT8, FLOAT16):
        if dtype == FLOAT16:
            values = [struct.unpack("<H", struct.pack("<e", v))[0] for v in values]
        b += b"".join(f_varint(5, int(v)) for v in values)  # unpacked int32_data
    else:
        raise ValueError(dtype)
    return b


def attr(name, v):
    """AttributeProto from a Python value: int, float, str, list of int/float, or ('tensor', bytes)."""
    b = f_bytes(1, name)
    if isinstance(v, tuple) and v[0] == "tensor":
        return b + f_bytes(5, v[1]) + f_varint(20, 4)
    if isinstance(v, bool) or isinstance(v, int):
        return b + f_varint(3, int(v)) + f_varint(20, 2)
    if isinstance(v, float):
        return b + f_f32(2, v) + f_varint(20, 1)
    if isinstance(v, str):
        return b + f_bytes(4, v) + f_varint(20, 3)
    if isinstance(v, list) and all(isinstance(x, int) for x in v):
        return b + b"".join(f_varint(8, x) for x in v) + f_varint(20, 7)
    if isinstance(v, list):
        return b + b"".join(f_f32(7, x) for x in v) + f_varint(20, 6)
    raise ValueError(v)


def node(op, inputs, outputs, name="", **attrs):
    b = b"".join(f_bytes(1, i) for i in inputs) + b"".join(f_bytes(2, o) for o in outputs)
    if name:
        b += f_bytes(3, name)
    b += f_bytes(4, op)
    for k in sorted(attrs):
        b += f_bytes(5, attr(k, attrs[k]))
    return b


def value_info(name, dims, elem=FLOAT):
    shape = b""
    for d in dims:
        shape += f_bytes(1, f_bytes(2, d) if isinstance(d, str) else f_varint(1, d))
    return f_bytes(1, name) + f_bytes(2, f_bytes(1, f_varint(1, elem) + f_bytes(2, shape)))


def model(nodes, inits, inputs, outputs, opset=13, name="g"):
    g = b"".join(f_bytes(1, n) for n in nodes) + f_bytes(2, name)
    g += b"".join(f_bytes(5, t) for t in inits)
    g += b"".join(f_bytes(11, v) for v in inputs) + b"".join(f_bytes(12, v) for v in outputs)
    m = f_varint(1, 8) + f_bytes(2, "make_fuzz_seeds") + f_bytes(7, g)
    m += f_bytes(8, f_bytes(1, "") + f_varint(2, opset))
    return m


def vals(n, scale=0.1, offset=0.0):
    """Deterministic small weights."""
    return [round(((i * 37 + 11) % 23 - 11) * scale + offset, 4) for i in range(n)]


def onnx_seeds():
    s = {}
    # 1. MLP: Gemm(transB) -> Relu -> Gemm, symbolic batch.
    s["mlp_gemm_relu.onnx"] = model(
        [node("Gemm", ["x", "w1", "b1"], ["h"], "fc1", transB=1), node("Relu", ["h"], ["r"], "relu1"),
         node("Gemm", ["r", "w2", "b2"], ["y"], "fc2", transB=1, alpha=1.0, beta=1.0)],
        [tensor("w1", [3, 4], vals(12)), tensor("b1", [3], vals(3, 0.01)),
         tensor("w2", [2, 3], vals(6, 0.2)), tensor("b2", [2], [0.0, 0.1], storage="typed")],
        [value_info("x", ["N", 4])], [value_info("y", ["N", 2])])
    # 2. CNN: Conv(pads) -> Relu -> MaxPool -> Flatten -> Gemm -> Softmax (stripped).
    s["cnn_conv_maxpool_softmax.onnx"] = model(
        [node("Conv", ["x", "cw", "cb"], ["c"], "conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]),
         node("Relu", ["c"], ["r"]), node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
         node("Flatten", ["p"], ["f"], axis=1), node("Gemm", ["f", "fw", "fb"], ["z"], transB=1),
         node("Softmax", ["z"], ["y"], axis=1)],
        [tensor("cw", [2, 1, 3, 3], vals(18)), tensor("cb", [2], [0.1, -0.1]),
         tensor("fw", [3, 8], vals(24, 0.05)), tensor("fb", [3], vals(3, 0.01))],
        [value_info("x", [1, 1, 4, 4])], [value_info("y", [1, 3])])
    # 3. BatchNorm (folded into the conv), Sigmoid, AveragePool (ceil, count_include_pad), and the
    #    PyTorch-style Shape -> Gather -> Unsqueeze -> Concat -> Reshape constant-folding chain.
    s["cnn_bn_sigmoid_avgpool_shape_reshape.onnx"] = model(
        [node("Conv", ["x", "cw"], ["c"], "conv", kernel_shape=[2, 2], strides=[1, 1], dilations=[1, 1], group=1),
         node("BatchNormalization", ["c", "g", "b", "m", "v"], ["bn"], "bn", epsilon=1e-5),
         node("Sigmoid", ["bn"], ["s"]),
         node("AveragePool", ["s"], ["a"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1, count_include_pad=1),
         node("Shape", ["a"], ["shp"]), node("Constant", [], ["zero"], value=("tensor", tensor("k0", [], [0], INT64))),
         node("Gather", ["shp", "zero"], ["n"], axis=0), node("Unsqueeze", ["n"], ["n1"], axes=[0]),
         node("Constant", [], ["minus1"], value_ints=[-1]),
         node("Concat", ["n1", "minus1"], ["newshape"], axis=0), node("Reshape", ["a", "newshape"], ["f"]),
         node("MatMul", ["f", "mw"], ["mm"]), node("Add", ["mm", "mb"], ["y"])],
        [tensor("cw", [2, 2, 2, 2], vals(16)), tensor("g", [2], [1.0, 0.5]), tensor("b", [2], [0.0, 0.1]),
         tensor("m", [2], [0.1, -0.2]), tensor("v", [2], [1.0, 2.0]),
         tensor("mw", [8, 3], vals(24, 0.1), DOUBLE, "typed"), tensor("mb", [3], [0.5, -0.5, 0.0], DOUBLE)],
        [value_info("x", ["batch", 2, 5, 5])], [value_info("y", ["batch", 3])])
    # 4. Residual block: two convs, Add of two computed tensors, Tanh, GlobalAveragePool.
    s["resnet_add_tanh_gap.onnx"] = model(
        [node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 3], auto_pad="SAME_UPPER"),
         node("Relu", ["c1"], ["r1"]),
         node("Conv", ["r1", "w2", "b2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
         node("Add", ["c2", "x"], ["sum"]), node("Tanh", ["sum"], ["t"]),
         node("GlobalAveragePool", ["t"], ["gap"]), node("Flatten", ["gap"], ["f"]),
         node("Gemm", ["f", "fw"], ["y"])],
        [tensor("w1", [2, 2, 3, 3], vals(36, 0.05)), tensor("b1", [2], [0.0, 0.0]),
         tensor("w2", [2, 2, 3, 3], vals(36, 0.03)), tensor("b2", [2], [0.1, 0.2]),
         tensor("fw", [2, 2], [1.0, -1.0, 0.5, 0.5])],
        [value_info("x", ["N", 2, 3, 3])], [value_info("y", ["N", 2])])
    # 5. Input normalisation (Sub mean, Div std: one ScaleShift), Pad, LeakyRelu, Transpose to
    #    NHWC, Atan, MatMul on a flattened (Reshape with a 0 and a -1) tensor, Sub of two tensors.
    s["norm_pad_leaky_transpose_atan.onnx"] = model(
        [node("Sub", ["x", "mean"], ["xs"]), node("Div", ["xs", "std"], ["xn"]),
         node("Pad", ["xn", "pads"], ["xp"], mode="constant"),
         node("LeakyRelu", ["xp"], ["l"], alpha=0.1),
         node("Transpose", ["l"], ["tr"], perm=[0, 2, 3, 1]), node("Atan", ["tr"], ["at"]),
         node("Reshape", ["at", "shape"], ["flat"]), node("MatMul", ["flat", "w"], ["z"]),
         node("Mul", ["flat", "half"], ["fh"]), node("MatMul", ["fh", "w"], ["z2"]), node("Sub", ["z", "z2"], ["y"])],
        [tensor("mean", [1, 2, 1, 1], [0.5, 0.25]), tensor("std", [1, 2, 1, 1], [0.5, 2.0]),
         tensor("pads", [8], [0, 0, 1, 0, 0, 0, 0, 1], INT64),
         tensor("shape", [2], [0, -1], INT64, "typed"), tensor("w", [18, 2], vals(36, 0.1)),
         tensor("half", [], [0.5])],
        [value_info("x", [1, 2, 2, 2])], [value_info("y", [1, 2])])
    # 6. Constant folding: Constant(value_float/value_floats/value_int), ConstantOfShape, Cast,
    #    Identity, Dropout, Squeeze/Unsqueeze, Slice, Neg/Sqrt/Reciprocal, Size, Div of ints.
    s["constant_folding_chain.onnx"] = model(
        [node("Constant", [], ["four"], value_int=4),
         node("Unsqueeze", ["four"], ["four1"], axes=[0]),
         node("ConstantOfShape", ["four1"], ["ones"], value=("tensor", tensor("one", [1], [1.0]))),
         node("Constant", [], ["sc"], value_floats=[4.0, 1.0, 9.0, 16.0]),
         node("Sqrt", ["sc"], ["sq"]), node("Reciprocal", ["sq"], ["rc"]), node("Neg", ["rc"], ["ng"]),
         node("Add", ["ones", "ng"], ["shift"]), node("Identity", ["shift"], ["shift2"]),
         node("Cast", ["shift2"], ["shift3"], to=1), node("Size", ["shift3"], ["sz"]),
         node("Constant", [], ["two"], value_int=2), node("Div", ["sz", "two"], ["half"]),
         node("Constant", [], ["st"], value=("tensor", tensor("st", [1], [0], INT64))),
         node("Unsqueeze", ["half"], ["half1"], axes=[0]),
         node("Slice", ["shift3", "st", "half1"], ["sl"]),
         node("Constant", [], ["cf"], value_float=1.5),
         node("Dropout", ["x"], ["xd"], ratio=0.5),
         node("Add", ["xd", "shift3"], ["a"]), node("Mul", ["a", "cf"], ["m"]),
         node("Unsqueeze", ["m"], ["u"], axes=[2]), node("Squeeze", ["u"], ["q"], axes=[2]),
         node("Relu", ["q"], ["r"]), node("Gemm", ["r", "w"], ["z"]),
         node("Add", ["z", "sl"], ["y"])],
        [tensor("w", [4, 2], vals(8, 0.3))],
        [value_info("x", [1, 4])], [value_info("y", [1, 2])])
    # 7. Element types and storages: float16 raw, float16 and int8 as int32_data, double raw,
    #    int32 shape tensor, opset 11 (Squeeze/Unsqueeze axes as attributes).
    s["dtypes_fp16_int8_double.onnx"] = model(
        [node("Gemm", ["x", "w16", "b16"], ["h"], transB=1), node("Sigmoid", ["h"], ["s"]),
         node("Mul", ["s", "q8"], ["sq"]), node("Gemm", ["sq", "wd"], ["y"], transB=0)],
        [tensor("w16", [3, 2], [0.5, -0.25, 1.0, 0.125, -1.0, 2.0], FLOAT16),
         tensor("b16", [3], [0.0, 0.5, -0.5], FLOAT16, "typed"),
         tensor("q8", [3], [1, -2, 3], INT8, "typed"), tensor("wd", [3, 2], vals(6, 0.25), DOUBLE)],
        [value_info("x", [1, 2])], [value_info("y", [1, 2])], opset=11)
    # 8. Integer constants stored as raw little-endian int64 (so that byte mutations reach extreme
    #    values): Reshape target, Pad pads, ConstantOfShape dims, Gather/Slice/Concat on a Shape.
    s["int64_raw_reshape_pad_cos.onnx"] = model(
        [node("Reshape", ["x", "shape"], ["x4"]),
         node("Pad", ["x4", "pads"], ["xp"], mode="constant"),
         node("ConstantOfShape", ["dims"], ["ones"], value=("tensor", tensor("v", [1], [0.5]))),
         node("Mul", ["xp", "ones"], ["m"]),
         node("Shape", ["m"], ["shp"]), node("Gather", ["shp", "idx"], ["g"], axis=0),
         node("Slice", ["shp", "st", "en", "ax", "sp"], ["sl"]),
         node("Concat", ["g", "sl"], ["cat"], axis=0),
         node("Reshape", ["m", "cat"], ["flat"]), node("Flatten", ["flat"], ["f"], axis=1),
         node("Gemm", ["f", "w"], ["y"], transB=1)],
        [tensor("shape", [4], [1, 1, 2, 2], INT64), tensor("pads", [8], [0, 0, 1, 1, 0, 0, 0, 0], INT64),
         tensor("dims", [4], [1, 1, 3, 3], INT64), tensor("idx", [1], [0], INT64),
         tensor("st", [1], [1], INT64), tensor("en", [1], [100], INT64),
         tensor("ax", [1], [0], INT64), tensor("sp", [1], [1], INT64),
         tensor("w", [2, 9], vals(18, 0.1))],
        [value_info("x", [1, 4])], [value_info("y", [1, 2])])
    s["int64_raw_unsqueeze_squeeze_transpose.onnx"] = model(
        [node("Unsqueeze", ["x", "ax1"], ["u"]), node("Transpose", ["u"], ["t"], perm=[0, 2, 1]),
         node("Squeeze", ["t", "ax2"], ["q"]), node("Relu", ["q"], ["r"]),
         node("Reshape", ["r", "s4"], ["r4"]),
         node("Conv", ["r4", "cw"], ["c"], kernel_shape=[1, 2], strides=[1, 1], pads=[0, 0, 0, 1], dilations=[1, 1]),
         node("MaxPool", ["c"], ["p"], kernel_shape=[1, 2], strides=[1, 1], pads=[0, 0, 0, 0], ceil_mode=0),
         node("Flatten", ["p"], ["y"])],
        [tensor("ax1", [1], [2], INT64), tensor("ax2", [1], [1], INT64), tensor("s4", [4], [1, 1, 1, 4], INT64),
         tensor("cw", [2, 1, 1, 2], vals(4))],
        [value_info("x", [1, 4])], [value_info("y", [1, 6])])
    # PyTorch's export of x[:, 1:] (Slice with ends = INT64_MAX on a Shape), as in real models.
    s["slice_ends_int64_max.onnx"] = model(
        [node("Shape", ["x"], ["shp"]), node("Slice", ["shp", "st", "en"], ["tail"]),
         node("Constant", [], ["one"], value_ints=[1]), node("Concat", ["one", "tail"], ["shape"], axis=0),
         node("Reshape", ["x", "shape"], ["r"]), node("Gemm", ["r", "w"], ["y"], transB=1)],
        [tensor("st", [1], [1], INT64), tensor("en", [1], [9223372036854775807], INT64),
         tensor("w", [2, 4], vals(8, 0.2))],
        [value_info("x", ["N", 4])], [value_info("y", ["N", 2])])
    # 9. Unsupported and malformed: an unsupported op, a custom domain, two inputs, a truncated
    #    model, an empty graph.
    s["unsupported_op.onnx"] = model(
        [node("Gemm", ["x", "w"], ["h"], transB=1), node("Exp", ["h"], ["y"])],
        [tensor("w", [2, 2], [1.0, 0.0, 0.0, 1.0])], [value_info("x", [1, 2])], [value_info("y", [1, 2])])
    s["two_inputs_mul.onnx"] = model(
        [node("Mul", ["x", "x2"], ["y"])], [],
        [value_info("x", [1, 2]), value_info("x2", [1, 2])], [value_info("y", [1, 2])])
    s["truncated.onnx"] = s["cnn_conv_maxpool_softmax.onnx"][:-7]
    s["empty_graph.onnx"] = f_varint(1, 8) + f_bytes(7, b"")
    return s


# ---- .npy ----------------------------------------------------------------------------------------


def npy(descr, shape, data, version=(1, 0), fortran=False, pad_to=64):
    shape_txt = "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
    header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, "True" if fortran else "False", shape_txt)
    prefix_len = 10 if version[0] == 1 else 12
    total = prefix_len + len(header) + 1
    header += " " * ((-total) % pad_to) + "\n"
    out = b"\x93NUMPY" + bytes(version)
    out += struct.pack("<H" if version[0] == 1 else "<I", len(header)) + header.encode("latin1")
    fmt = {"|u1": "B", "<f4": "<f", "<f8": "<d", "<i8": "<q", "<i4": "<i", "|b1": "?", "<f2": "<e",
           "<u2": "<H", "|i1": "b", ">f4": ">f"}[descr]
    out += b"".join(struct.pack(fmt, v) for v in data)
    return out


def mnist_images(count):
    """The first `count` images of data/mnist_test_100.npy (uint8 (100, 1, 28, 28)) and labels."""
    with open(os.path.join(ROOT, "data", "mnist_test_100.npy"), "rb") as f:
        raw = f.read()
    hlen = struct.unpack("<H", raw[8:10])[0]
    body = raw[10 + hlen:]
    assert b"'|u1'" in raw[:10 + hlen] and len(body) == 100 * 784, "unexpected data/mnist_test_100.npy"
    with open(os.path.join(ROOT, "data", "mnist_test_100.labels.npy"), "rb") as f:
        lraw = f.read()
    lh = struct.unpack("<H", lraw[8:10])[0]
    labels = list(struct.unpack("<100q", lraw[10 + lh:10 + lh + 800]))
    return [body[i * 784:(i + 1) * 784] for i in range(count)], labels[:count]


def npy_seeds():
    imgs, labels = mnist_images(2)
    s = {}
    s["u8_nchw_2x1x2x2_with_labels.npy"] = npy("|u1", [2, 1, 2, 2], [0, 64, 128, 255, 1, 2, 3, 4]) + npy("<i8", [2], [3, 7])
    s["f4_nhw_2x2x3.npy"] = npy("<f4", [2, 2, 3], [i / 8 for i in range(12)])
    s["f8_flat_3x4_with_labels_n1.npy"] = npy("<f8", [3, 4], [float(i) for i in range(12)]) + npy("<f8", [3, 1], [0, 1, -1])
    s["f4_single_row_4.npy"] = npy("<f4", [4], [0.0, 0.25, 0.5, 1.0], version=(2, 0))
    s["u8_mnist_2x1x28x28_with_labels.npy"] = npy("|u1", [2, 1, 28, 28], list(b"".join(imgs))) + npy("<i8", [2], labels)
    s["f4_mnist_flat_1x784.npy"] = npy("<f4", [1, 784], [b / 255 for b in imgs[0]], version=(3, 0))
    s["f2_1x3x1x1.npy"] = npy("<f2", [1, 3, 1, 1], [0.5, 1.0, 2.0])
    s["b1_and_i1_u2.npy"] = npy("|b1", [1, 2, 2], [True, False, True, True]) + npy("<u2", [1], [9])
    s["big_endian_rejected.npy"] = npy(">f4", [1, 4], [1.0, 2.0, 3.0, 4.0])
    s["fortran_rejected.npy"] = npy("<f4", [2, 2, 1], [1.0, 2.0, 3.0, 4.0], fortran=True)
    s["labels_count_mismatch.npy"] = npy("|u1", [2, 4], [1] * 8) + npy("<i4", [3], [0, 1, 2])
    s["zero_images.npy"] = npy("<f4", [0, 1, 2, 2], [])
    return s


# ---- CSV, MNIST idx, CIFAR, sidecar ----------------------------------------------------------------


def csv_seeds():
    imgs, labels = mnist_images(2)
    s = {}
    s["mnist_2rows_784.csv"] = "".join(str(l) + "," + ",".join(str(b) for b in img) + "\n"
                                       for img, l in zip(imgs, labels)).encode()
    s["chw_1x2x2.csv"] = b"0,0,64,128,255\n1,1.5,2.5,3.5,4.5\n-1,0,0,0,0\n"
    s["hwc_3x1x2_crlf.csv"] = b"7, 1, 2, 3, 4, 5, 6\r\n\r\n2,+1e2,2E-1,3.,.5,0,255\r\n"
    s["chw_2x1x1_blank_lines.csv"] = b"\n3,0.5,1\n\n4,1,0.25\n"
    s["bad_number.csv"] = b"1,0,x,0,0\n"
    s["bad_label.csv"] = b"1.5,0,0,0,0\n2,nan,0,0,0\n"
    s["ragged.csv"] = b"1,0,0,0,0\n2,0,0\n"
    return s


def idx_images(count, h, w, pixels):
    return struct.pack(">IIII", 0x803, count, h, w) + bytes(pixels)


def idx_labels(labels):
    return struct.pack(">II", 0x801, len(labels)) + bytes(labels)


SEP = b"LABELS::"


def gz(data):
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=6) as f:
        f.write(data)
    return buf.getvalue()


def idx_seeds():
    imgs, labels = mnist_images(1)
    s = {}
    s["idx_2x2x2_with_labels"] = idx_images(2, 2, 2, [0, 1, 2, 3, 250, 251, 252, 253]) + SEP + idx_labels([3, 9])
    s["idx_3x1x3_no_labels"] = idx_images(3, 1, 3, range(9))
    s["idx_mnist_1x28x28_with_label"] = idx_images(1, 28, 28, imgs[0]) + SEP + idx_labels(labels)
    s["idx_gzip_2x2x2_with_labels"] = gz(idx_images(2, 2, 2, [9, 8, 7, 6, 5, 4, 3, 2])) + SEP + gz(idx_labels([1, 2]))
    s["idx_labels_file_as_images"] = idx_labels([1, 2, 3])
    s["idx_truncated"] = idx_images(4, 2, 2, range(10))
    s["idx_label_count_mismatch"] = idx_images(1, 1, 1, [5]) + SEP + idx_labels([1, 2])
    return s


def cifar_seeds():
    def record(label, k):
        return bytes([label]) + bytes((i * k + label) % 256 for i in range(3072))
    return {"cifar_1_record.bin": record(3, 7), "cifar_2_records.bin": record(0, 1) + record(9, 13),
            "cifar_bad_label.bin": record(10, 3), "cifar_short.bin": record(1, 5)[:-1]}


def sidecar_seeds():
    s = {}
    for name in SHIPPED_SIDECARS:
        with open(os.path.join(ROOT, "models", name), "rb") as f:
            s[name] = f.read()
    s["readme_example.json"] = b'{"scale": 0.00392156862745098, "mean": [0.5], "std": [1.0], "layout": "NCHW"}'
    s["cifar_nhwc.json"] = (b'{"scale": 0.00392156862745098, "mean": [0.4914, 0.4822, 0.4465], '
                            b'"std": [0.2471, 0.2435, 0.2616], "layout": "NHWC", "dataset": "cifar10"}')
    s["scalars_flat.json"] = b'{"scale": 1, "mean": 0.1307, "std": 0.3081, "layout": "flat"}'
    s["bad_values.json"] = b'{"scale": -1, "mean": ["a"], "std": [0], "layout": "HWC"}'
    s["not_an_object.json"] = b'[1, 2, 3]'
    s["nested_unicode.json"] = '{"dataset": "mnist \u00e9\u6f22", "extra": {"a": [null, true, 1e308]}, "mean": []}'.encode()
    return s


# ---- dictionaries ------------------------------------------------------------------------------------

ONNX_WORDS = [
    "Conv", "Gemm", "MatMul", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Atan", "Add", "Sub", "Mul", "Div",
    "BatchNormalization", "MaxPool", "AveragePool", "GlobalAveragePool", "Flatten", "Reshape", "Squeeze",
    "Unsqueeze", "Transpose", "Pad", "Softmax", "LogSoftmax", "Constant", "ConstantOfShape", "Identity",
    "Dropout", "Cast", "Shape", "Gather", "Concat", "Slice", "Size", "Neg", "Sqrt", "Reciprocal",
    "kernel_shape", "strides", "pads", "dilations", "group", "auto_pad", "SAME_UPPER", "SAME_LOWER", "VALID",
    "NOTSET", "transA", "transB", "alpha", "beta", "epsilon", "axis", "axes", "perm", "value", "value_float",
    "value_floats", "value_int", "value_ints", "ceil_mode", "count_include_pad", "allowzero", "mode",
    "constant", "reflect", "to", "starts", "ends", "training_mode", "ai.onnx", "com.microsoft",
]
NPY_WORDS = ["\\x93NUMPY\\x01\\x00", "\\x93NUMPY\\x02\\x00", "\\x93NUMPY\\x03\\x00", "'descr'", "'fortran_order'",
             "'shape'", "True", "False", "None", "'|u1'", "'<f4'", "'<f8'", "'<f2'", "'<i8'", "'|b1'", "'>f4'",
             "'<u8'", "'|i1'", "'<c8'", "(1, 28, 28)", ", }", "L"]
JSON_WORDS = ["\"scale\"", "\"mean\"", "\"std\"", "\"layout\"", "\"dataset\"", "\"NCHW\"", "\"NHWC\"",
              "\"flat\"", "\"mnist\"", "\"cifar10\"", "true", "false", "null", "1e308", "-0", "0.00392156862745098",
              "\\\\u0000", "\\\\ud800"]
CSV_WORDS = [",", "\\x0d\\x0a", "-1", "+", "e-", "E+", "nan", "inf", "255", "0.5", "1e308"]
IDX_WORDS = ["LABELS::", "\\x00\\x00\\x08\\x03", "\\x00\\x00\\x08\\x01", "\\x1f\\x8b\\x08\\x00",
             "\\xff\\xff\\xff\\xff", "\\x00\\x00\\x00\\x1c"]


def write_dict(path, words):
    """libFuzzer dictionary: one "word" per line; the words above already use its \\xNN and \\\\
    escapes, only their double quotes are escaped here."""
    with open(path, "w") as f:
        for w in words:
            f.write('"%s"\n' % w.replace('"', '\\"'))


# ---- main ---------------------------------------------------------------------------------------------


def write_corpus(out, target, files):
    d = os.path.join(out, "corpus", target)
    # regress_*: the reproducers of fixed findings (docs/RELIABILITY.md), kept by hand
    keep = {}
    if os.path.isdir(d):
        for name in os.listdir(d):
            if name.startswith("regress_"):
                with open(os.path.join(d, name), "rb") as f:
                    keep[name] = f.read()
        shutil.rmtree(d)
    os.makedirs(d)
    for name, data in keep.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    for name, data in sorted(files.items()):
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    return sum(len(v) for v in files.values())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fuzz"))
    a = ap.parse_args()

    onnx = onnx_seeds()
    for name in SHIPPED_MODELS:
        with open(os.path.join(ROOT, "models", name), "rb") as f:
            onnx["shipped_" + name] = f.read()
    total = 0
    for target, files in [("fuzz_onnx", onnx), ("fuzz_npy", npy_seeds()), ("fuzz_eran_csv", csv_seeds()),
                          ("fuzz_mnist_idx", idx_seeds()), ("fuzz_cifar", cifar_seeds()),
                          ("fuzz_sidecar", sidecar_seeds())]:
        n = write_corpus(a.out, target, files)
        total += n
        print("%-15s %3d files %8d bytes" % (target, len(files), n))
    dd = os.path.join(a.out, "dict")
    os.makedirs(dd, exist_ok=True)
    write_dict(os.path.join(dd, "fuzz_onnx.dict"), ONNX_WORDS)
    write_dict(os.path.join(dd, "fuzz_npy.dict"), NPY_WORDS)
    write_dict(os.path.join(dd, "fuzz_sidecar.dict"), JSON_WORDS)
    write_dict(os.path.join(dd, "fuzz_eran_csv.dict"), CSV_WORDS)
    write_dict(os.path.join(dd, "fuzz_mnist_idx.dict"), IDX_WORDS)
    print("total %d bytes" % total)
    return 0


if __name__ == "__main__":
    sys.exit(main())

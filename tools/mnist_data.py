"""MNIST helpers shared by the training and reference scripts (numpy only, no torch).

The shipped models' input convention is CNN-Cert's: x = pixel/255 - 0.5 (scale 1/255, mean 0.5, std 1).
"""
import gzip
import os

import numpy as np

SCALE = 1.0 / 255.0
MEAN = 0.5
STD = 1.0


def sidecar_convention():
    """The input-convention fields that open every shipped model's sidecar JSON."""
    return {"dataset": "mnist", "scale": SCALE, "mean": [MEAN], "std": [STD], "layout": "NCHW",
            "input_range": [0, 255]}


def read_idx(path):
    """Parse a gzip'ed idx file (MNIST format) into a numpy array."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[0:4], "big")
    if (magic >> 8) != 0x08:  # 0x08 = unsigned byte data
        raise ValueError("%s: unsupported idx magic 0x%08x" % (path, magic))
    ndim = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError("%s: size mismatch" % path)
    return data.reshape(dims).copy()


def load_mnist(data_dir):
    """(x_train uint8 (N,1,28,28), y_train int64, x_test, y_test) from DATA/images/mnist/*.gz."""
    d = os.path.join(data_dir, "images", "mnist")
    xtr = read_idx(os.path.join(d, "train-images-idx3-ubyte.gz"))
    ytr = read_idx(os.path.join(d, "train-labels-idx1-ubyte.gz"))
    xte = read_idx(os.path.join(d, "t10k-images-idx3-ubyte.gz"))
    yte = read_idx(os.path.join(d, "t10k-labels-idx1-ubyte.gz"))
    assert xtr.shape == (60000, 28, 28) and ytr.shape == (60000,)
    assert xte.shape == (10000, 28, 28) and yte.shape == (10000,)
    return (xtr.reshape(-1, 1, 28, 28), ytr.astype(np.int64),
            xte.reshape(-1, 1, 28, 28), yte.astype(np.int64))


def preprocess(x_uint8):
    """pixel/255 - 0.5 as float32, NCHW (the sidecar convention)."""
    x = x_uint8.astype(np.float32) * np.float32(SCALE)
    return (x - np.float32(MEAN)) / np.float32(STD)

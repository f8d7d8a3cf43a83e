"""cnncert: certified robustness bounds for neural networks (CNN-Cert, Fast-Lin, CROWN, DeepCert, PROVEN).

    import cnncert, numpy as np
    net = cnncert.load("models/mnist_cnn_3layer_5_3.onnx")        # the sidecar MODEL.onnx.json is honoured
    x = np.load("data/mnist_test_100.npy")                       # raw pixels, (N, C, H, W) or (N, H, W, C)
    y = np.load("data/mnist_test_100.labels.npy")
    res = cnncert.certify(net, x, labels=y, norm="inf", method="cnncert")
    res.radius, res.to_pandas()

Images are raw pixels: the network's input convention (``scale``, ``mean``, ``std``, ``layout``, from
the sidecar or the keyword arguments of :func:`load`) is applied as on the command line. Pass
``preprocessed=True`` to give the model's inputs directly. Radii are in the network's input space,
as the command line reports them. The C++ work runs with the GIL released; Ctrl-C stops
``certify`` and ``proven`` at their next search step.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from . import _cnncert
from ._cnncert import CudaError, Error, InternalError, InvalidArgument, UnsupportedModel

__version__ = _cnncert.__version__

__all__ = [
    "Network", "load", "certify", "bounds", "proven", "attack", "vnnlib", "from_torch", "cuda_available", "cuda_device_info",
    "CertifyResult", "BoundsResult", "ProvenResult", "AttackResult", "VnnlibResult",
    "Error", "InvalidArgument", "UnsupportedModel", "CudaError", "InternalError", "__version__",
]

cuda_available = _cnncert.cuda_available
cuda_device_info = _cnncert.cuda_device_info


class Network:
    """An ONNX classifier with its input convention (see :func:`load`)."""

    def __init__(self, core: "_cnncert.Network"):
        self._core = core

    path = property(lambda self: self._core.path, doc="the ONNX file")
    input_shape = property(lambda self: self._core.input_shape, doc="the model's input shape, without the batch")
    image_shape = property(lambda self: self._core.image_shape, doc="(C, H, W) of one image")
    input_size = property(lambda self: self._core.input_size, doc="values per model input")
    num_classes = property(lambda self: self._core.num_classes, doc="number of logits")
    convention = property(lambda self: self._core.convention, doc="scale, mean, std and layout applied to images")
    notes = property(lambda self: self._core.notes, doc="what the importer rewrote")

    def layers(self) -> list:
        """The layer table: name, op, output shape and parameter count of every node."""
        return self._core.layers()

    def logits(self, x, *, layout: Optional[str] = None, preprocessed: bool = False) -> np.ndarray:
        """Logits (N, classes) of a batch of images."""
        return self._core.logits(x, layout or "", preprocessed)

    def predict(self, x, *, layout: Optional[str] = None, preprocessed: bool = False) -> np.ndarray:
        """Predicted classes (N,) of a batch of images."""
        return np.argmax(self.logits(x, layout=layout, preprocessed=preprocessed), axis=1)

    def __repr__(self) -> str:
        return f"cnncert.Network({self.path!r}, input {self.input_shape}, {self.num_classes} classes)"


def load(path: str, *, scale: Optional[float] = None, mean=None, std=None, layout: Optional[str] = None) -> Network:
    """Imports an ONNX model. Its convention comes from the sidecar ``MODEL.onnx.json`` when there is one;
    ``scale`` (e.g. ``1/255``), ``mean`` and ``std`` (per channel) and ``layout`` ("NCHW", "NHWC", "flat")
    override it."""
    as_list = lambda v: None if v is None else [float(e) for e in np.atleast_1d(v)]
    return Network(_cnncert.load(str(path), None if scale is None else float(scale), as_list(mean), as_list(std), layout))


def _progress(progress, unit: str):
    """A (callback, close) pair: tqdm when it is installed and wanted, the user's callable, or nothing."""
    if callable(progress):
        return progress, lambda: None
    if progress is False or (progress is None and not sys.stderr.isatty()):
        return None, lambda: None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None, lambda: None
    bar = tqdm(total=0, unit=unit, leave=False)

    def update(done, total):
        bar.total = total
        bar.n = done
        bar.refresh()

    return update, bar.close


def _core(net) -> "_cnncert.Network":
    if not isinstance(net, Network):
        raise InvalidArgument("net must be a cnncert.Network (from cnncert.load)")
    return net._core


def _engine_options(norm, method, device, engine, threads, exact_cnncert, clip, gpu_memory_mib, layout, preprocessed):
    return dict(norm=str(norm), method=method, device=device, engine=engine, threads=threads, exact_cnncert=bool(exact_cnncert),
                clip=None if clip is None else (float(clip[0]), float(clip[1])), gpu_memory_mib=gpu_memory_mib,
                layout=layout, preprocessed=bool(preprocessed))


class _Table:
    """Per-row arrays with a pandas view."""

    _columns: tuple = ()

    def __len__(self) -> int:
        return len(getattr(self, self._columns[0]))

    def to_pandas(self):
        """The rows as a pandas DataFrame (needs pandas)."""
        import pandas as pd
        return pd.DataFrame({c: getattr(self, c) for c in self._columns})


@dataclass(repr=False)
class CertifyResult(_Table):
    """One row per (image, target) search; a skipped image (misclassified, ...) is one row with
    ``skipped`` set, radius NaN and the reason in ``note``. ``target`` is -1 for untargeted searches.
    ``seconds`` is each row's share of its batch's wall time (the images of a search step are bounded
    together). With ``attack_moves``: ``steps_by_attack`` counts the steps a counterexample decided and
    ``attack_eps`` is the nearest counterexample's distance (inf when none was found)."""
    image: np.ndarray
    label: np.ndarray
    predicted: np.ndarray
    skipped: np.ndarray
    target: np.ndarray
    radius: np.ndarray
    steps: np.ndarray
    seconds: np.ndarray
    note: list
    steps_by_attack: np.ndarray
    attack_eps: np.ndarray
    engine: str = ""
    engine_mode: str = ""
    total_seconds: float = 0.0
    _columns = ("image", "label", "predicted", "skipped", "target", "radius", "steps", "seconds", "note",
                "steps_by_attack", "attack_eps")

    @property
    def avg_robustness(self) -> float:
        """Mean certified radius over the searches (skipped images excluded): the papers' summary."""
        r = self.radius[~self.skipped]
        return float(r.mean()) if r.size else 0.0

    def __repr__(self) -> str:
        return (f"CertifyResult({int((~self.skipped).sum())} searches, {int(self.skipped.sum())} skipped, "
                f"avg robustness {self.avg_robustness:.5f}, engine {self.engine_mode!r})")


@dataclass(repr=False)
class BoundsResult:
    """Certified bounds at one radius: ``lower``/``upper`` are (N, rows); row k of image i bounds the
    margin f_pred − f_{row_class[i, k]} (or the logit row_class[i, k] with ``logits=True``)."""
    lower: np.ndarray
    upper: np.ndarray
    row_class: np.ndarray
    predicted: np.ndarray
    certified: np.ndarray
    error: list
    engine: str = ""

    def __repr__(self) -> str:
        return f"BoundsResult({len(self.predicted)} images, {int(self.certified.sum())} certified)"


@dataclass(repr=False)
class ProvenResult(_Table):
    """PROVEN's probabilistic radius per (image, target) row: ``noise_level`` (ε or σ) kept with
    probability ≥ the confidence, beside the worst-case radius and their ratio (NaN when not searched)."""
    image: np.ndarray
    label: np.ndarray
    predicted: np.ndarray
    skipped: np.ndarray
    target: np.ndarray
    noise_level: np.ndarray
    worst_case: np.ndarray
    ratio: np.ndarray
    note: list
    engine: str = ""
    worst_case_seconds: float = 0.0
    proven_seconds: float = 0.0
    _columns = ("image", "label", "predicted", "skipped", "target", "noise_level", "worst_case", "ratio", "note")

    def __repr__(self) -> str:
        return f"ProvenResult({int((~self.skipped).sum())} searches, {int(self.skipped.sum())} skipped)"


def certify(net: Network, x, labels=None, *, norm="inf", method: str = "cnncert", target: str = "random",
            search: str = "cnncert", device: str = "cpu", threads: Optional[int] = None, engine: str = "fast",
            exact_cnncert: bool = False, seed: int = 1215, clip=None, targets=None, layout: Optional[str] = None,
            preprocessed: bool = False, first_index: int = 0, gpu_memory_mib: Optional[int] = None,
            attack_moves: int = 0, progress: Any = None) -> CertifyResult:
    """Certified robustness radius of every image, as ``cnncert certify``.

    ``labels``: the true classes (a misclassified image is skipped; -1 or None: certify the prediction).
    ``norm``: "inf", 2 or 1. ``method``: fastlin, adaptive, cnncert, deepcert or crown. ``target``: random,
    runnerup, least, all or untargeted (``targets``: one class per image instead). ``search``: cnncert or
    deepcert. ``device``: cpu, gpu or auto. ``threads``: CPU threads (None: all cores). ``engine``: the CPU
    engine, fast or reference. ``first_index`` numbers the images (it seeds the random targets, as the
    command line's ``--offset``). ``attack_moves``: PGD moves per search step looking for a counterexample
    that decides it without bounds (``--attack-moves``; the radii stay those of the plain search).
    ``progress``: None = a tqdm bar on a terminal when tqdm is installed, False = none, True = tqdm
    whenever installed, or a callable (done, total)."""
    callback, close = _progress(progress, "step")
    opts = _engine_options(norm, method, device, engine, threads, exact_cnncert, clip, gpu_memory_mib, layout, preprocessed)
    if isinstance(attack_moves, bool) or not isinstance(attack_moves, (int, np.integer)):
        raise InvalidArgument(f"attack_moves must be a whole number in 0..10000, got {attack_moves!r}")
    opts.update(target=target, search=search, seed=int(seed), first_index=int(first_index),
                attack_moves=int(attack_moves))
    try:
        d = _cnncert.certify(_core(net), np.asarray(x), None if labels is None else np.asarray(labels),
                             None if targets is None else np.asarray(targets), opts, callback)
    finally:
        close()
    return CertifyResult(**d)


def bounds(net: Network, x, eps: float, *, logits: bool = False, norm="inf", method: str = "cnncert", device: str = "cpu",
           threads: Optional[int] = None, engine: str = "fast", exact_cnncert: bool = False, clip=None,
           layout: Optional[str] = None, preprocessed: bool = False, gpu_memory_mib: Optional[int] = None) -> BoundsResult:
    """Certified lower/upper bounds of every margin f_pred − f_k (or every logit) within radius ``eps``,
    as ``cnncert bounds``; ``certified[i]`` says every margin of image i has a positive lower bound."""
    opts = _engine_options(norm, method, device, engine, threads, exact_cnncert, clip, gpu_memory_mib, layout, preprocessed)
    return BoundsResult(**_cnncert.bounds(_core(net), np.asarray(x), float(eps), bool(logits), opts))


def proven(net: Network, x, labels=None, *, noise: str = "uniform", confidence: float = 0.9999, uniform_proxy: bool = False,
           covariance=None, worst_case: bool = True, norm="inf", method: str = "cnncert", target: str = "random",
           search: str = "cnncert", device: str = "cpu", threads: Optional[int] = None, engine: str = "fast", seed: int = 1215,
           layout: Optional[str] = None, preprocessed: bool = False, gpu_memory_mib: Optional[int] = None,
           progress: Any = None) -> ProvenResult:
    """PROVEN: the largest noise level (uniform, bernoulli, bounded: ε; gaussian: σ) that keeps each
    prediction with probability ≥ ``confidence``, beside the worst-case radius, as ``cnncert proven``."""
    callback, close = _progress(progress, "step")
    opts = _engine_options(norm, method, device, engine, threads, False, None, gpu_memory_mib, layout, preprocessed)
    opts.update(target=target, search=search, seed=int(seed), noise=noise, confidence=float(confidence),
                uniform_proxy=bool(uniform_proxy), worst_case=bool(worst_case),
                covariance=None if covariance is None else np.asarray(covariance, dtype=np.float64))
    try:
        d = _cnncert.proven(_core(net), np.asarray(x), None if labels is None else np.asarray(labels), opts, callback)
    finally:
        close()
    return ProvenResult(**d)


@dataclass(repr=False)
class AttackResult:
    """Adversarial examples: ``distortion`` (‖x_adv − x‖ in the model's input space, inf when none was
    found) is an upper bound on the minimal perturbation, to set against the certified radius (a lower
    bound). ``x`` holds the adversarial model inputs (NaN rows where none was found)."""
    found: np.ndarray
    distortion: np.ndarray
    target: np.ndarray
    x: np.ndarray
    predicted: np.ndarray

    def __repr__(self) -> str:
        return f"AttackResult({int(self.found.sum())} of {len(self.found)} found)"


def attack(net: Network, x, targets=None, *, norm="inf", method: str = "pgd", clip=None, seed: int = 1,
           layout: Optional[str] = None, preprocessed: bool = False) -> AttackResult:
    """Gradient attacks on the predicted class: PGD (any norm, bisection over ε) or Carlini–Wagner
    (``method="cw"``, ℓ2). ``targets``: one class per image (None or -1: any other class). ``clip``
    keeps the points in a box of the model's input space."""
    opts = dict(norm=str(norm), method=method, seed=int(seed), layout=layout, preprocessed=bool(preprocessed),
                clip=None if clip is None else (float(clip[0]), float(clip[1])))
    return AttackResult(**_cnncert.attack(_core(net), np.asarray(x), None if targets is None else np.asarray(targets), opts))


@dataclass(repr=False)
class VnnlibResult:
    """A VNN-LIB property's answer: "unsat" (verified), "sat" (``x``: the counterexample input in the
    network's input order, ``y``: its outputs, re-checked by the forward pass), "unknown" or "timeout"."""
    answer: str
    x: np.ndarray
    y: np.ndarray
    cases: int
    cases_refuted: int
    note: str
    seconds: float

    def __repr__(self) -> str:
        return f"VnnlibResult({self.answer!r}, {self.cases_refuted} of {self.cases} cases refuted, {self.seconds:.3g} s)"


def vnnlib(net: Network, property_path: str, *, timeout: float = 0, method: str = "cnncert", attack: bool = True,
           device: str = "cpu", threads: Optional[int] = None, engine: str = "fast",
           gpu_memory_mib: Optional[int] = None) -> VnnlibResult:
    """Checks a VNN-LIB property (.vnnlib or .vnnlib.gz) as ``cnncert vnnlib``: its input box is in the
    network's own input space (no convention applied)."""
    opts = _engine_options("inf", method, device, engine, threads, False, None, gpu_memory_mib, None, False)
    opts.update(timeout=float(timeout), attack=bool(attack))
    return VnnlibResult(**_cnncert.vnnlib(_core(net), str(property_path), opts))


def from_torch(module, example_input, *, path: Optional[str] = None, opset: int = 13, **convention) -> Network:
    """Exports a PyTorch module with ``torch.onnx.export`` (torch is an optional dependency) and loads it.
    ``example_input`` is one batch of model inputs; ``convention`` (scale, mean, std, layout) goes to
    :func:`load`. Without ``path`` the ONNX file is a temporary one, removed after loading."""
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise InvalidArgument("from_torch needs PyTorch (pip install torch)") from e
    import os
    import tempfile

    was_training = module.training
    module.eval()
    tmp = None
    if path is None:
        fd, tmp = tempfile.mkstemp(suffix=".onnx")
        os.close(fd)
        path = tmp
    try:
        kwargs = dict(opset_version=opset, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        with torch.no_grad():
            try:  # the TorchScript exporter: plain ONNX ops at the opset asked for (newer torch defaults to dynamo)
                torch.onnx.export(module, example_input, path, dynamo=False, **kwargs)
            except TypeError:  # a torch without the dynamo switch
                torch.onnx.export(module, example_input, path, **kwargs)
        return load(path, **convention)
    finally:
        module.train(was_training)
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)

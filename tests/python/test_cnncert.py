"""The Python module against the C++ command line and on bad input."""
import threading
import time

import numpy as np
import pytest

import cnncert
from conftest import IMAGES, LABELS, MODELS
from onnx_bytes import model


def cli_rows(j):
    """(image, skipped, target, eps) rows of a `cnncert certify --json` output."""
    rows = []
    for im in j["images"]:
        if im["skipped"]:
            rows.append((im["image"], True, -1, None))
        for t in im.get("targets", []):
            rows.append((im["image"], False, t["target"], t["eps"]))
    return rows


def py_rows(res):
    return [(int(i), bool(s), int(t), None if s else float(e))
            for i, s, t, e in zip(res.image, res.skipped, res.target, res.radius)]


# ---- the same numbers as the command line ---------------------------------------------------------

@pytest.mark.parametrize("model_name,args", [
    ("mnist_cnn_3layer_5_3", dict(norm="inf", method="cnncert")),
    ("mnist_cnn_3layer_5_3", dict(norm="2", method="fastlin", target="runnerup")),
    ("mnist_cnn_4layer_5_3_sigmoid", dict(norm="1", method="deepcert", target="least")),
    ("mnist_3layer_fc_20", dict(norm="inf", method="crown", target="untargeted", search="deepcert")),
])
def test_certify_radii_equal_the_command_line(cli, images, labels, model_name, args):
    path = MODELS / f"{model_name}.onnx"
    n = 8
    flags = []
    for k, v in args.items():
        flags += [f"--{k}", v]
    j = cli("certify", path, IMAGES, "-n", n, *flags)
    res = cnncert.certify(cnncert.load(path), images[:n], labels=labels[:n], progress=False, **args)
    assert py_rows(res) == cli_rows(j)  # radii identical, not close
    assert res.engine == j["engine"] and res.engine_mode == j["engine_mode"]
    assert res.avg_robustness == pytest.approx(j["avg_robustness"], rel=1e-12)


def test_counterexamples_first_keep_the_radii_as_the_command_line_says(cli, images, labels, shipped):
    n = 4
    j = cli("certify", MODELS / "mnist_cnn_3layer_5_3.onnx", IMAGES, "-n", n, "--target", "untargeted",
            "--attack-moves", 10)
    res = cnncert.certify(shipped, images[:n], labels=labels[:n], target="untargeted", attack_moves=10, progress=False)
    plain = cnncert.certify(shipped, images[:n], labels=labels[:n], target="untargeted", progress=False)
    assert py_rows(res) == cli_rows(j) == py_rows(plain)
    want = [(t["steps_by_attack"], t.get("attack_eps", float("inf"))) for im in j["images"] for t in im.get("targets", [])]
    got = [(int(s), float(e)) for s, e, sk in zip(res.steps_by_attack, res.attack_eps, res.skipped) if not sk]
    assert got == want
    assert sum(s for s, _ in got) > 0
    assert list(plain.steps_by_attack) == [0] * len(plain)
    for bad in (-1, 10001, 2.5, "10", None, True):
        with pytest.raises(cnncert.InvalidArgument, match="attack_moves"):
            cnncert.certify(shipped, images[:1], attack_moves=bad, progress=False)


def test_random_targets_follow_the_image_index_as_offset_does(cli, images, labels, shipped):
    j = cli("certify", MODELS / "mnist_cnn_3layer_5_3.onnx", IMAGES, "-n", 5, "--offset", 20, "--seed", 3)
    res = cnncert.certify(shipped, images[20:25], labels=labels[20:25], seed=3, first_index=20, progress=False)
    assert py_rows(res) == cli_rows(j)


def test_bounds_equal_the_command_line(cli, images, shipped):
    j = cli("bounds", MODELS / "mnist_cnn_3layer_5_3.onnx", IMAGES, "-n", 4, "--eps", 0.02, "--norm", 2)
    b = cnncert.bounds(shipped, images[:4], 0.02, norm=2)
    for i, im in enumerate(j["images"]):
        assert b.predicted[i] == im["predicted"]
        assert bool(b.certified[i]) == im["certified"]
        assert [int(c) for c in b.row_class[i]] == [m["target"] for m in im["margins"]]
        assert list(b.lower[i]) == [m["lower"] for m in im["margins"]]
        assert list(b.upper[i]) == [m["upper"] for m in im["margins"]]


def test_proven_equals_the_command_line(cli, images, labels, shipped):
    j = cli("proven", MODELS / "mnist_cnn_3layer_5_3.onnx", IMAGES, "-n", 3, "--noise", "uniform")
    p = cnncert.proven(shipped, images[:3], labels=labels[:3], noise="uniform", progress=False)
    got = [(int(i), int(t), float(v), float(w)) for i, t, v, w in zip(p.image, p.target, p.noise_level, p.worst_case)]
    want = [(im["image"], t["target"], t["noise"], t["worst_case"]) for im in j["images"] for t in im["targets"]]
    assert got == want


def test_predict_equals_the_command_line(cli, images, shipped):
    j = cli("predict", MODELS / "mnist_cnn_3layer_5_3.onnx", IMAGES, "-n", 10)
    np.testing.assert_array_equal(shipped.logits(images[:10]), np.array([im["logits"] for im in j["images"]]))
    assert list(shipped.predict(images[:10])) == [im["predicted"] for im in j["images"]]


# ---- numpy dtypes and layouts -----------------------------------------------------------------------

def test_dtypes_and_layouts_give_the_same_inputs(images, shipped):
    x = images[:6]
    want = shipped.logits(x)
    for variant in (x.astype(np.float32), x.astype(np.float64), x.astype(np.int64), x.astype(np.int16),
                    np.asfortranarray(x), x[:, 0], x.reshape(6, -1)):
        np.testing.assert_array_equal(shipped.logits(variant), want)
    nhwc = x.transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(shipped.logits(nhwc), want)
    np.testing.assert_array_equal(shipped.logits(nhwc, layout="NHWC"), want)
    strided = images[:12][::2]  # a view with gaps, read in place
    assert not strided.flags.c_contiguous
    np.testing.assert_array_equal(shipped.logits(strided), shipped.logits(np.ascontiguousarray(strided)))
    wide = np.zeros((6, 2, 28, 28), np.float32)[:, :1]  # another non-contiguous view
    wide[:] = x
    np.testing.assert_array_equal(shipped.logits(wide), want)
    # The model's own inputs: (pixel / 255 - 0.5), the shipped sidecar's convention.
    pre = x.astype(np.float64) * shipped.convention["scale"] - 0.5
    np.testing.assert_array_equal(shipped.logits(pre, preprocessed=True), want)
    np.testing.assert_array_equal(shipped.logits(pre.reshape(6, -1), preprocessed=True), want)


def test_convention_keywords_override_the_sidecar(images):
    x = images[:3].astype(np.float64) / 255
    net = cnncert.load(MODELS / "mnist_cnn_3layer_5_3.onnx", scale=1.0)
    # pixel / 255 and pixel · (1/255) round apart by an ulp or so.
    np.testing.assert_allclose(net.logits(x), cnncert.load(MODELS / "mnist_cnn_3layer_5_3.onnx").logits(images[:3]), rtol=1e-12)
    assert net.convention["scale"] == 1.0


def test_result_tables(images, labels, shipped):
    res = cnncert.certify(shipped, images[:6], labels=labels[:6], target="all", progress=False)
    assert len(res) == 6 * 9 - 9 * int((shipped.predict(images[:6]) != labels[:6]).sum()) + int(res.skipped.sum())
    pd = pytest.importorskip("pandas")
    df = res.to_pandas()
    assert isinstance(df, pd.DataFrame) and len(df) == len(res)
    assert list(df.columns) == ["image", "label", "predicted", "skipped", "target", "radius", "steps", "seconds", "note",
                                "steps_by_attack", "attack_eps"]
    assert (df.radius[~df.skipped] > 0).all()


def test_misclassified_images_are_skipped(images, labels, shipped):
    wrong = (labels[:10] + 1) % 10
    res = cnncert.certify(shipped, images[:10], labels=wrong, progress=False)
    assert res.skipped.all() and np.isnan(res.radius).all()
    assert set(res.note) == {"misclassified"}


# ---- errors -----------------------------------------------------------------------------------------

def test_bad_input_raises_the_documented_exceptions(tmp_path, images, shipped):
    assert issubclass(cnncert.InvalidArgument, cnncert.Error) and issubclass(cnncert.InvalidArgument, ValueError)
    assert issubclass(cnncert.UnsupportedModel, cnncert.Error) and issubclass(cnncert.CudaError, cnncert.Error)
    with pytest.raises(cnncert.InvalidArgument, match="cannot open the model file"):
        cnncert.load(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07 not a model")
    with pytest.raises(cnncert.InvalidArgument):
        cnncert.load(tmp_path / "junk.onnx")
    (tmp_path / "sign.onnx").write_bytes(model([("Relu", ["x"], ["r"]), ("Sign", ["r"], ["y"])], [1, 4], [1, 4]))
    with pytest.raises(cnncert.UnsupportedModel, match="Sign"):
        cnncert.load(tmp_path / "sign.onnx")
    cases = [
        (dict(x=images[:2, :, :20]), "fit neither"),
        (dict(x=images[0, 0]), "do not fit"),
        (dict(x=images[0, 0, 0]), "batch dimension"),
        (dict(x=np.full((2, 1, 28, 28), np.nan)), "NaN"),
        (dict(x=images[:2], norm="7"), "norm"),
        (dict(x=images[:2], method="magic"), "method"),
        (dict(x=images[:2], labels=[1]), "labels"),
        (dict(x=images[:2], labels=[3, 12]), "not a class"),
        (dict(x=images[:2], device="tpu"), "device"),
        (dict(x=images[:2], threads=-1), "threads"),
        (dict(x=images[:2], layout="NWHC"), "layout"),
        (dict(x=images[:2], norm=2, clip=(0, 1)), "clip"),
        (dict(x=np.array([["a"] * 784] * 2)), "numeric"),
        (dict(x=images[:2], labels=[np.inf, 1]), "whole class"),
        (dict(x=images[:2], labels=[1e30, 1]), "whole class"),
        (dict(x=images[:2], threads="many"), "threads"),
        (dict(x=images[:2], seed=-3), "seed"),
    ]
    for kw, needle in cases:
        with pytest.raises(cnncert.InvalidArgument, match=needle):
            cnncert.certify(shipped, progress=False, **kw)
    with pytest.raises(cnncert.InvalidArgument, match="eps"):
        cnncert.bounds(shipped, images[:1], -1.0)
    with pytest.raises(cnncert.InvalidArgument, match="confidence"):
        cnncert.proven(shipped, images[:1], confidence=1.5, progress=False)
    with pytest.raises(cnncert.InvalidArgument, match="seed"):
        cnncert.attack(shipped, images[:1], seed=-1)
    with pytest.raises(cnncert.InvalidArgument, match="cnncert.Network"):
        cnncert.certify("not a network", images[:1])


def test_gpu_without_a_gpu_says_why(images, shipped):
    if cnncert.cuda_available():
        pytest.skip("a GPU is usable here")
    with pytest.raises(cnncert.InvalidArgument, match="GPU|CUDA|gpu"):
        cnncert.certify(shipped, images[:1], device="gpu", progress=False)


# ---- the GIL and progress ---------------------------------------------------------------------------

def test_the_gil_is_released_during_certify(images, labels, shipped):
    """A Python thread keeps counting while certify runs (it would stall with the GIL held)."""
    count, stop = [0], threading.Event()

    def spin():
        while not stop.is_set():
            count[0] += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        t0, c0 = time.perf_counter(), count[0]
        time.sleep(0.3)
        rate = (count[0] - c0) / (time.perf_counter() - t0)  # counts per second with the GIL free
        t1, c1 = time.perf_counter(), count[0]
        cnncert.certify(shipped, images[:20], labels=labels[:20], threads=1, progress=False)
        during = (count[0] - c1) / (time.perf_counter() - t1)
    finally:
        stop.set()
        t.join()
    # Holding the GIL, the thread would run only in the progress callback's moments (~15 × 5 ms).
    assert during > 0.3 * rate, (during, rate)


def test_progress_callback_sees_every_step(images, labels, shipped):
    seen = []
    cnncert.certify(shipped, images[:3], labels=labels[:3], progress=lambda d, t: seen.append((d, t)))
    assert seen and seen[-1][0] == seen[-1][1] and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_an_exception_in_the_progress_callback_stops_the_run(images, shipped):
    def boom(done, total):
        raise KeyError("stop here")

    with pytest.raises(KeyError, match="stop here"):
        cnncert.certify(shipped, images[:2], progress=boom)


# ---- PyTorch (optional) -----------------------------------------------------------------------------

def test_from_torch_matches_the_module(images):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(3 * 26 * 26, 10))
    x = torch.rand(4, 1, 28, 28)
    net = cnncert.from_torch(m, x)
    with torch.no_grad():
        want = m(x).double().numpy()
    np.testing.assert_allclose(net.logits(x.double().numpy()), want, rtol=1e-5, atol=1e-5)
    assert cnncert.certify(net, x.numpy(), progress=False).radius.min() > 0


# ---- attacks ----------------------------------------------------------------------------------------

def test_attack_distortion_is_above_the_certified_radius(images, labels, shipped):
    res = cnncert.certify(shipped, images[:4], labels=labels[:4], target="runnerup", progress=False)
    adv = cnncert.attack(shipped, images[:4], targets=res.target, norm="inf")
    assert adv.found.all()
    assert np.all(res.radius < adv.distortion)  # a certified lower bound below an attack's upper bound
    # The adversarial inputs really change the prediction, within the reported distance.
    assert np.all(shipped.predict(adv.x, preprocessed=True) == res.target)
    x0 = images[:4].reshape(4, -1) * shipped.convention["scale"] - 0.5
    np.testing.assert_allclose(np.abs(adv.x - x0).max(axis=1), adv.distortion, rtol=1e-9)
    with pytest.raises(cnncert.InvalidArgument, match="l2"):
        cnncert.attack(shipped, images[:1], method="cw", norm="inf")


def test_the_example_runs(tmp_path):
    import subprocess
    import sys
    from conftest import ROOT
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "certify_mnist.py"), "-n", "3", "--out", str(tmp_path / "r.png")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "avg certified radius" in r.stdout and "avg adversarial distortion" in r.stdout


# ---- VNN-LIB ----------------------------------------------------------------------------------------

def _robustness_property(net, x, eps):
    pre = (x.reshape(-1).astype(np.float64) * net.convention["scale"] - 0.5)
    c = int(net.predict(x[None])[0])
    lines = [f"(declare-const X_{i} Real)" for i in range(pre.size)] + [f"(declare-const Y_{j} Real)" for j in range(10)]
    for i, v in enumerate(pre):
        lines.append(f"(assert (<= X_{i} {float(min(0.5, v + eps))!r}))")
        lines.append(f"(assert (>= X_{i} {float(max(-0.5, v - eps))!r}))")
    lines.append("(assert (or " + " ".join(f"(and (>= Y_{k} Y_{c}))" for k in range(10) if k != c) + "))")
    return "\n".join(lines) + "\n", c


def test_vnnlib_answers_like_the_command_line(cli_exe, tmp_path, images, shipped):
    import subprocess
    for eps, want in ((0.01, "unsat"), (0.3, "sat")):
        text, c = _robustness_property(shipped, images[0], eps)
        path = tmp_path / f"p{eps}.vnnlib"
        path.write_text(text)
        r = cnncert.vnnlib(shipped, path)
        assert r.answer == want, r.note
        out = subprocess.run([str(cli_exe), "vnnlib", str(MODELS / "mnist_cnn_3layer_5_3.onnx"), str(path)],
                             capture_output=True, text=True)
        assert out.stdout == want + "\n", out.stderr
        if want == "sat":  # the counterexample changes the prediction and lies in the box
            x0 = images[0].reshape(-1).astype(np.float64) * shipped.convention["scale"] - 0.5
            assert np.all(r.x >= np.maximum(-0.5, x0 - eps) - 1e-15) and np.all(r.x <= np.minimum(0.5, x0 + eps) + 1e-15)
            assert shipped.predict(r.x[None], preprocessed=True)[0] != c or r.y.max() == r.y[c]
            np.testing.assert_array_equal(shipped.logits(r.x[None], preprocessed=True)[0], r.y)
    bad = tmp_path / "bad.vnnlib"
    bad.write_text("(declare-const X_0 Real)\n(assert (<= X_0 1)\n")
    with pytest.raises(cnncert.InvalidArgument, match="bad.vnnlib:2"):
        cnncert.vnnlib(shipped, bad)

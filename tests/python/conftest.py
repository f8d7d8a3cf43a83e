"""Shared fixtures of the Python tests: the repository's shipped models and images, and the C++
command line (build/cnncert, or $CNNCERT_CLI) that the Python results are compared with."""
import json
import os
import pathlib
import subprocess

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
IMAGES = ROOT / "data" / "mnist_test_100.npy"
LABELS = ROOT / "data" / "mnist_test_100.labels.npy"


@pytest.fixture(scope="session")
def images():
    return np.load(IMAGES)


@pytest.fixture(scope="session")
def labels():
    return np.load(LABELS)


@pytest.fixture(scope="session")
def shipped():
    import cnncert
    return cnncert.load(MODELS / "mnist_cnn_3layer_5_3.onnx")


def cli_path():
    p = pathlib.Path(os.environ.get("CNNCERT_CLI", ROOT / "build" / "cnncert"))
    return p if p.is_file() and os.access(p, os.X_OK) else None


@pytest.fixture(scope="session")
def cli_exe():
    exe = cli_path()
    if exe is None:
        pytest.skip("the cnncert command is not built (build/cnncert; set CNNCERT_CLI to use another)")
    return exe


@pytest.fixture(scope="session")
def cli(tmp_path_factory):
    """Runs `cnncert ARGS --json FILE` and returns the JSON (skips without the command line)."""
    exe = cli_path()
    if exe is None:
        pytest.skip("the cnncert command is not built (build/cnncert; set CNNCERT_CLI to use another)")
    out_dir = tmp_path_factory.mktemp("cli")
    counter = [0]

    def run(*args):
        counter[0] += 1
        out = out_dir / f"{counter[0]}.json"
        quiet = [] if args[0] == "bounds" else ["-q"]  # bounds has no -q
        r = subprocess.run([str(exe), *map(str, args), *quiet, "--json", str(out)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return json.loads(out.read_text())

    return run

#!/usr/bin/env python3
"""Certifies the shipped MNIST CNN with several methods, plots the certified radii per method, and
sets them against the perturbation a PGD attack needs (an upper bound on the true minimal one).

    pip install . matplotlib pandas      # in a clone of cnncert
    python examples/certify_mnist.py -n 30 --out radii.png

Every certified radius is a proven lower bound and every attack distortion an upper bound, so for
each image certified ≤ attack; the gap is what the relaxation gives away."""
import argparse
import pathlib
import sys

import numpy as np

import cnncert

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(ROOT / "models/mnist_cnn_3layer_5_3.onnx"))
    ap.add_argument("--images", default=str(ROOT / "data/mnist_test_100.npy"))
    ap.add_argument("-n", type=int, default=30, help="number of images")
    ap.add_argument("--methods", default="fastlin,cnncert", help="comma-separated --method values")
    ap.add_argument("--out", default="radii.png", help="the plot (needs matplotlib)")
    args = ap.parse_args()

    net = cnncert.load(args.model)
    x = np.load(args.images)[: args.n]
    labels_path = pathlib.Path(args.images).with_suffix(".labels.npy")
    y = np.load(labels_path)[: args.n] if labels_path.exists() else None

    radii = {}
    for method in args.methods.split(","):
        res = cnncert.certify(net, x, labels=y, norm="inf", method=method, target="runnerup")
        radii[method] = res
        print(f"{method:>10}: avg certified radius {res.avg_robustness:.5f} "
              f"({int((~res.skipped).sum())} images, {res.total_seconds:.2f} s)")

    # The attack goes for the same target class as the certification (the runner-up).
    first = next(iter(radii.values()))
    keep = ~first.skipped
    adv = cnncert.attack(net, x[keep], targets=first.target[keep], norm="inf", method="pgd")
    print(f"{'pgd':>10}: avg adversarial distortion {np.mean(adv.distortion[adv.found]):.5f} "
          f"({int(adv.found.sum())} of {int(keep.sum())} found)")
    for method, res in radii.items():  # soundness: a proven lower bound never exceeds an attack
        assert np.all(res.radius[keep][adv.found] <= adv.distortion[adv.found] + 1e-12), method

    try:
        import pandas as pd
        table = pd.DataFrame({"image": first.image[keep], "target": first.target[keep], "pgd": adv.distortion})
        for method, res in radii.items():
            table[method] = res.radius[keep]
        print(table.head(10).to_string(index=False))
    except ImportError:
        print("(pandas not installed: no table)")

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no plot)")
        return 0
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    bins = np.linspace(0, max(np.nanmax(r.radius) for r in radii.values()) * 1.05, 25)
    for method, res in radii.items():
        left.hist(res.radius[keep], bins=bins, alpha=0.6, label=method)
    left.set(xlabel="certified ℓ∞ radius (input space)", ylabel="images", title="certified radius per method")
    left.legend()
    for method, res in radii.items():
        right.scatter(adv.distortion[adv.found], res.radius[keep][adv.found], s=12, label=method)
    top = float(np.max(adv.distortion[adv.found])) if adv.found.any() else 1.0
    right.plot([0, top], [0, top], "k--", lw=1, label="certified = attack")
    right.set(xlabel="PGD distortion (upper bound)", ylabel="certified radius (lower bound)", title="lower vs upper bound")
    right.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Writes docs/RESULTS.md and the plots from the JSON files of tools/make_results.sh.

Usage: python3 tools/plot_results.py RESULTS_DIR DOCS_DIR   (matplotlib from Debian's python3-matplotlib)
"""
import json
import os
import sys

RELU = ["mnist_cnn_4layer_5_3", "mnist_cnn_4layer_5_3_bn", "mnist_cnn_lenet", "mnist_cnn_lenet_avgpool", "mnist_3layer_fc_20"]
SMOOTH = ["mnist_cnn_4layer_5_3_sigmoid", "mnist_cnn_4layer_5_3_tanh", "mnist_cnn_4layer_5_3_atan"]
NORM_NAME = {"inf": "ℓ∞", "2": "ℓ2", "1": "ℓ1"}


def load(d, name):
    p = os.path.join(d, name + ".json")
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return json.load(f)


def table(res, methods=None):
    lines = []
    for norm in res["norms"]:
        lines.append(f"\n**{NORM_NAME.get(norm['norm'], norm['norm'])}** ({norm['pairs']} correctly classified images, "
                     f"{'no certified radius above an attack' if norm['violations'] == 0 else str(norm['violations']) + ' VIOLATIONS'})\n")
        lines.append("| method | kind | images | avg radius | improvement | s/image | speedup vs Fast-Lin dense |")
        lines.append("|---|---|---|---|---|---|---|")
        for r in norm["rows"]:
            if methods and r["method"] not in methods:
                continue
            if "status" in r:
                lines.append(f"| {r['method']} | n/a | | | | | {r['status']} |")
                continue
            lines.append(f"| {r['method']} | {r['kind']} | {r['images']} | {r['avg_radius']:.5g} | {r.get('improvement', '')} | "
                         f"{r['seconds_per_image']:.4g} | {r.get('speedup_vs_dense', '')} |")
    return "\n".join(lines)


def main():
    rdir, ddir = sys.argv[1], sys.argv[2]
    out = ["# Reproduced results on the shipped zoo",
           "",
           "Computed with `tools/make_results.sh` (which calls `cnncert-bench compare` and `cnncert proven`) on the",
           "first 10 of the shipped MNIST test images (`data/mnist_test_100.npy`), random targets (seed 1215), the",
           "CNN-Cert search (log-space, 15 steps), CPU engine on a 2-core machine. Radii are in the models' input space",
           "(pixel/255 − 0.5, CNN-Cert's convention). \"certified\" rows are lower bounds on the minimal distortion,",
           "\"upper\" rows (attacks) upper bounds, CLEVER an estimate. Improvement is relative to CNN-Cert-Relu",
           "(ReLU networks) or CNN-Cert (other activations) on the same (image, target) pairs. Every method, the slow",
           "Fast-Lin (dense) and LP baselines included, runs on the same images (the \"images\" column), so the rows",
           "compare like with like. Regenerate: `tools/make_results.sh`. The s/image columns come from a shared",
           "machine (the 2026-12-01 run had a niced fuzz campaign beside it): they show orders of magnitude, the",
           "controlled timings are in bench/RESULTS.md.",
           "",
           "Every certified row is sound (a proven lower bound). On ReLU networks CNN-Cert-Ada, DeepCert and CROWN",
           "coincide by definition: they differ only in the sigmoid/tanh/arctan relaxations (MATH.md §2.2–2.4) and",
           "all use the adaptive ReLU rule of §2.1; CNN-Cert-Relu (= Fast-Lin's bounds) uses the u/(u−l) lower slope,",
           "and Fast-Lin (dense) is the same relaxation on the network with every convolution unrolled, hence the same",
           "radii at a far higher cost. On sigmoid-like networks CROWN (sound) equals CNN-Cert: the sound form of",
           "CROWN's mixed-sign lines (§2.4) is CNN-Cert's bisection (§2.2). Max-pool inputs take the original",
           "CNN-Cert's bounds [max(l,0), max(u,0)] of the preceding ReLU (§2.5).",
           ""]
    out.append("## ReLU networks (the shape of CNN-Cert's Tables 3–6)\n")
    for m in RELU:
        res = load(rdir, m)
        if res:
            out.append(f"### {m}\n" + table(res) + "\n")
    out.append("## Sigmoid, tanh and arctan networks: DeepCert vs CNN-Cert (the shape of DeepCert's Table 1 and CNN-Cert's Table 7)\n")
    for m in SMOOTH:
        res = load(rdir, m)
        if res:
            out.append(f"### {m}\n" + table(res) + "\n")
    out.append("## PROVEN: probabilistic (uniform noise, 99.99 %) vs worst-case ℓ∞ radius\n")
    out.append("| model | searches | avg worst-case ε | avg probabilistic ε | avg ratio |")
    out.append("|---|---|---|---|---|")
    for m in RELU + SMOOTH:
        p = load(rdir, "proven_" + m)
        if p:
            n = sum(len(i.get("targets", [])) for i in p["images"] if not i["skipped"])
            out.append(f"| {m} | {n} | {p['avg_worst_case']:.5g} | {p['avg_noise']:.5g} | {p['avg_ratio']:.3g} |")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        res = load(rdir, "mnist_cnn_4layer_5_3")
        if res:
            norm = res["norms"][0]
            rows = [r for r in norm["rows"] if "radii" in r and r["radii"]]
            def plot(draw, ylabel, title, name):
                """One log-scale figure per method, rotated method labels, saved into docs/."""
                fig, ax = plt.subplots(figsize=(8, 4))
                draw(ax)
                ax.set_yscale("log")
                ax.set_ylabel(ylabel)
                ax.set_title(title)
                plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
                fig.tight_layout()
                fig.savefig(os.path.join(ddir, name), dpi=110)

            methods = [r["method"] for r in rows]
            plot(lambda ax: ax.boxplot([[x for x in r["radii"] if x != float("inf")] for r in rows], labels=methods),
                 "radius (ℓ∞)", f"mnist_cnn_4layer_5_3: certified radii, attacks and CLEVER ({norm['pairs']} images each)",
                 "radii_mnist_cnn_4layer_5_3.png")
            plot(lambda ax: ax.bar(methods, [r["seconds_per_image"] for r in rows]),
                 "seconds per image (CPU, 2 cores)", "mnist_cnn_4layer_5_3, ℓ∞: time per image per method",
                 "time_mnist_cnn_4layer_5_3.png")
            out.append("\n## Plots\n")
            out.append("![certified radii per method](radii_mnist_cnn_4layer_5_3.png)\n")
            out.append("![time per image per method](time_mnist_cnn_4layer_5_3.png)\n")
    except ImportError:
        out.append("\n(plots skipped: matplotlib is not installed)\n")
    out.append("\n## Not in these tables\n")
    out.append("mnist_resnet_3 (43 904 ReLUs) and mnist_cnn_7layer (50 960 ReLUs) take 1.8 s and 11 s per bound evaluation on this")
    out.append("2-core CPU (27 s and 165 s per image and method): they are left for the GPU engine (issue 4).")
    with open(os.path.join(ddir, "RESULTS.md"), "w") as f:
        f.write("\n".join(out) + "\n")
    print("wrote", os.path.join(ddir, "RESULTS.md"))


if __name__ == "__main__":
    main()

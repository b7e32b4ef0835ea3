"""AUC vs. the share of teacher forwards skipped, as the gate's threshold rho varies.

Reproduce (teachers in runs/teachers):
    python benchmarks/rho_sweep.py --rhos 0.5 0.8 0.9 1.0 --seeds 0
Runs gated DiverseDistill once per (rho, seed) with everything else as in
configs/rec/diverse_distill.yaml, plus the dense committee as the reference, and plots
validation and test AUC against the fraction of teacher-sample forwards skipped
(benchmarks/results/rho_sweep.png, .json). Model selection is on validation only; the test AUC
is read off the best-validation epoch and never used to pick rho.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recsys_committee.train.config import load_config  # noqa: E402
from recsys_committee.train.run_distill import run_distill  # noqa: E402
from recsys_committee.train.run_train import load_data  # noqa: E402


def plot(points: list[dict], dense: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for split, marker in (("val", "o"), ("test", "s")):
        xs = [100 * p["skipped"] for p in points]
        ys = [p[f"{split}_auc"] for p in points]
        ax.plot(xs, ys, marker=marker, label=f"gated, {split}")
        for p, x, y in zip(points, xs, ys):
            ax.annotate(f"rho={p['rho']}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.axhline(dense[f"{split}_auc"], ls="--", lw=0.8, color="gray" if split == "val" else "black", label=f"dense, {split}")
    ax.set_xlabel("teacher forwards skipped (%)")
    ax.set_ylabel("AUC (mean over seeds)")
    ax.set_title("Gate threshold rho: quality vs. teacher forwards skipped")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rhos", nargs="+", type=float, default=[0.5, 0.8, 0.9, 1.0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--out", default="runs/rho_sweep")
    parser.add_argument("--results", default="benchmarks/results")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    data = None
    runs = []
    for seed in args.seeds:
        for rho in [None, *args.rhos]:  # None: the dense committee
            config = "diverse_distill_dense.yaml" if rho is None else "diverse_distill.yaml"
            extra = [] if rho is None else [f"committee.gate_config.rho={rho}"]
            cfg = load_config(ROOT / "configs/rec" / config, [f"seed={seed}", "train.progress=false", *extra, *args.overrides])
            data = data or load_data(cfg.data)
            name = "dense" if rho is None else f"rho{rho}"
            m = run_distill(cfg, Path(args.out) / f"{name}-seed{seed}", data=data)
            f = m["teacher_forwards"]
            runs.append({"rho": rho, "seed": seed, "val_auc": m["val"]["auc"], "test_auc": m["test"]["auc"], "skipped": 1 - f["run"] / f["dense"]})
            print(f"{name} seed {seed}: val {m['val']['auc']:.4f} test {m['test']['auc']:.4f} skipped {100 * runs[-1]['skipped']:.1f}%", flush=True)

    def mean_of(rho):
        rows = [r for r in runs if r["rho"] == rho]
        return {"rho": rho, **{k: float(np.mean([r[k] for r in rows])) for k in ("val_auc", "test_auc", "skipped")}}

    dense, points = mean_of(None), [mean_of(rho) for rho in args.rhos]
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/rho_sweep.py " + " ".join(sys.argv[1:])
    (results / "rho_sweep.json").write_text(json.dumps({"command": command, "runs": runs, "dense": dense, "points": points}, indent=2))
    plot(points, dense, results / "rho_sweep.png")
    print(f"\n{command}\n| rho | skipped | val AUC | test AUC |\n|---|---:|---:|---:|")
    print(f"| dense | 0.0% | {dense['val_auc']:.4f} | {dense['test_auc']:.4f} |")
    for p in points:
        print(f"| {p['rho']} | {100 * p['skipped']:.1f}% | {p['val_auc']:.4f} | {p['test_auc']:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

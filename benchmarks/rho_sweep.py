"""AUC (top-1) vs. the share of teacher forwards skipped, as the gate's threshold rho varies.

Reproduce (teachers in runs/teachers, or runs/vision_teachers with --domain vision):
    python benchmarks/rho_sweep.py --rhos 0.5 0.8 0.9 1.0 --seeds 0
    python benchmarks/rho_sweep.py --domain vision --rhos 0.5 0.8 1.0 --seeds 0
Runs gated DiverseDistill once per (rho, seed) with everything else as in
configs/rec/diverse_distill_importance.yaml (the importance gate), plus the dense committee as the reference, and plots
validation and test AUC against the fraction of teacher-sample forwards skipped
(benchmarks/results/rho_sweep.png, .json; vision: rho_sweep_vision.*). Model selection is on validation only; the test AUC
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


DOMAINS = {  # configs folder, metric of record, its label
    "rec": ("configs/rec", "auc", "AUC"),
    "vision": ("configs/vision", "top1", "top-1 accuracy"),
}


def run_domain(domain: str, cfg, out: Path, data):
    """(metrics, data) of one distillation run of ``domain`` (data loaded once, then reused)."""
    if domain == "rec":
        from recsys_committee.rec_domain import run_distill
        from recsys_committee.rec_domain import load_data

        data = data or load_data(cfg.data)
        return run_distill(cfg, out, data=data, overwrite=True), data
    from vision_committee.domain import load_vision_data, run_vision_distill

    data = data or load_vision_data(cfg)
    return run_vision_distill(cfg, out, data=data, overwrite=True), data


def plot(points: list[dict], dense: dict, path: Path, metric: str = "auc", label: str = "AUC") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for split, marker in (("val", "o"), ("test", "s")):
        xs = [100 * p["skipped"] for p in points]
        ys = [p[f"{split}_{metric}"] for p in points]
        ax.plot(xs, ys, marker=marker, label=f"gated, {split}")
        for p, x, y in zip(points, xs, ys):
            ax.annotate(f"rho={p['rho']}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.axhline(dense[f"{split}_{metric}"], ls="--", lw=0.8, color="gray" if split == "val" else "black", label=f"dense, {split}")
    ax.set_xlabel("teacher forwards skipped (%)")
    ax.set_ylabel(f"{label} (mean over seeds)")
    ax.set_title("Gate threshold rho: quality vs. teacher forwards skipped")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", choices=list(DOMAINS), default="rec")
    parser.add_argument("--rhos", nargs="+", type=float, default=[0.5, 0.8, 0.9, 1.0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--out", help="default: runs/rho_sweep (rec), runs/rho_sweep_vision (vision)")
    parser.add_argument("--results", default="benchmarks/results")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    configs, metric, label = DOMAINS[args.domain]
    suffix = "" if args.domain == "rec" else "_vision"
    out = Path(args.out or f"runs/rho_sweep{suffix}")
    data = None
    runs = []
    for seed in args.seeds:
        for rho in [None, *args.rhos]:  # None: the dense committee
            config = "diverse_distill_dense.yaml" if rho is None else "diverse_distill_importance.yaml"
            extra = [] if rho is None else [f"committee.gate_config.rho={rho}"]
            cfg = load_config(ROOT / configs / config, [f"seed={seed}", "train.progress=false", *extra, *args.overrides])
            name = "dense" if rho is None else f"rho{rho}"
            m, data = run_domain(args.domain, cfg, out / f"{name}-seed{seed}", data)
            f = m["teacher_forwards"]
            runs.append({"rho": rho, "seed": seed, f"val_{metric}": m["val"][metric], f"test_{metric}": m["test"][metric], "skipped": 1 - f["run"] / f["dense"]})
            print(f"{name} seed {seed}: val {m['val'][metric]:.4f} test {m['test'][metric]:.4f} skipped {100 * runs[-1]['skipped']:.1f}%", flush=True)

    def mean_of(rho):
        rows = [r for r in runs if r["rho"] == rho]
        return {"rho": rho, **{k: float(np.mean([r[k] for r in rows])) for k in (f"val_{metric}", f"test_{metric}", "skipped")}}

    dense, points = mean_of(None), [mean_of(rho) for rho in args.rhos]
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/rho_sweep.py " + " ".join(sys.argv[1:])
    (results / f"rho_sweep{suffix}.json").write_text(json.dumps({"command": command, "runs": runs, "dense": dense, "points": points}, indent=2))
    plot(points, dense, results / f"rho_sweep{suffix}.png", metric, label)
    print(f"\n{command}\n| rho | skipped | val {label} | test {label} |\n|---|---:|---:|---:|")
    print(f"| dense | 0.0% | {dense[f'val_{metric}']:.4f} | {dense[f'test_{metric}']:.4f} |")
    for p in points:
        print(f"| {p['rho']} | {100 * p['skipped']:.1f}% | {p[f'val_{metric}']:.4f} | {p[f'test_{metric}']:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""One process vs. two Ray Train workers (gloo, sharded tables) on MovieLens-100K, and a run
whose worker is killed mid-way: same test AUC within noise? no step lost or repeated?

Reproduce (teachers from benchmarks/train_models.py copied to runs/teachers):
    python benchmarks/distributed_rec.py --seeds 0 1 2 --kill-at-step 150
Both arms see the same global batch (2 workers x batch/2 rows per step), the same epochs and
early stopping; model selection on validation, test AUC of the best-validation epoch.
Writes benchmarks/results/distributed_rec.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recsys_committee.train.config import load_config  # noqa: E402
from recsys_committee.rec_domain import run_with_ray  # noqa: E402
from recsys_committee.rec_domain import run_distill  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/rec/diverse_distill.yaml")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=512, help="global rows per step (both arms)")
    parser.add_argument("--kill-at-step", type=int, default=150, help="rank 1 of the seed-0 drill run dies here (0: no drill)")
    parser.add_argument("--checkpoint-every", type=int, default=50)
    parser.add_argument("--out", default="runs/distributed_rec")
    parser.add_argument("--results", default="benchmarks/results")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out = Path(args.out)
    rows = []

    def record(arm: str, seed: int, metrics: dict, seconds: float) -> None:
        rows.append({
            "arm": arm, "seed": seed, "test_auc": metrics["test"]["auc"], "val_auc": metrics["val"]["auc"],
            "best_epoch": metrics["best_epoch"], "steps": metrics["steps"], "resumed_from_step": metrics.get("resumed_from_step"),
            "forwards_run": metrics["teacher_forwards"]["run"], "forwards_dense": metrics["teacher_forwards"]["dense"],
            "wall_seconds": seconds, "epoch_seconds": metrics["epoch_seconds"],
        })
        print(f"{arm} seed {seed}: test AUC {metrics['test']['auc']:.4f} steps {metrics['steps']} ({seconds:.0f}s)", flush=True)

    for seed in args.seeds:
        base = [f"seed={seed}", "train.progress=false", *args.overrides]
        cfg = load_config(args.config, base + [f"train.batch_size={args.batch_size}"])
        start = time.perf_counter()
        record("1 process", seed, run_distill(cfg, out / f"one-seed{seed}", overwrite=True), time.perf_counter() - start)
        cfg = load_config(args.config, base + [f"train.batch_size={args.batch_size // 2}", "dist.num_workers=2"])
        start = time.perf_counter()
        record("2 workers", seed, run_with_ray("distill", cfg, out / f"two-seed{seed}", overwrite=True), time.perf_counter() - start)
    if args.kill_at_step:
        seed = args.seeds[0]
        cfg = load_config(args.config, [
            f"seed={seed}", "train.progress=false", *args.overrides, f"train.batch_size={args.batch_size // 2}", "dist.num_workers=2",
            f"train.checkpoint_every={args.checkpoint_every}", "dist.kill_rank=1", f"dist.kill_at_step={args.kill_at_step}",
        ])
        start = time.perf_counter()
        record("2 workers, rank 1 killed", seed, run_with_ray("distill", cfg, out / f"killed-seed{seed}", overwrite=True), time.perf_counter() - start)

    summary = {}
    for arm in dict.fromkeys(r["arm"] for r in rows):
        aucs = [r["test_auc"] for r in rows if r["arm"] == arm]
        summary[arm] = {"test_auc_mean": float(np.mean(aucs)), "test_auc_std": float(np.std(aucs)), "n": len(aucs)}
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/distributed_rec.py " + " ".join(sys.argv[1:])
    (results / "distributed_rec.json").write_text(json.dumps({"command": command, "runs": rows, "summary": summary}, indent=2))
    print(f"\n{command}\n")
    print("| arm | seed | test AUC | best epoch | steps | resumed from | teacher forwards run/dense | wall s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['arm']} | {r['seed']} | {r['test_auc']:.4f} | {r['best_epoch']} | {r['steps']} | {r['resumed_from_step'] or '-'} | "
              f"{r['forwards_run']}/{r['forwards_dense']} | {r['wall_seconds']:.0f} |")
    for arm, s in summary.items():
        print(f"{arm}: test AUC {s['test_auc_mean']:.4f} ± {s['test_auc_std']:.4f} (n={s['n']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

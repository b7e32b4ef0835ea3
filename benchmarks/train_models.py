"""Train the student and the experts over several seeds; print mean +- std of test AUC.

Reproduce:  .venv/bin/python benchmarks/train_models.py --seeds 0 1 2 --out runs/models
Why a script and not a test: it takes minutes; tests check behaviour, this measures quality.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from recsys_committee.train.config import load_config
from recsys_committee.rec_domain import load_data, run_train

DEFAULT_CONFIGS = ["configs/rec/student.yaml", "configs/rec/expert_dlrm.yaml", "configs/rec/expert_din_dcn.yaml"]


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", default="runs/models")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    data = None
    summary = {}
    for config in args.configs:
        runs = []
        for seed in args.seeds:
            cfg = load_config(config, [*args.overrides, f"seed={seed}", "train.progress=false"])
            data = data or load_data(cfg.data)
            out = Path(args.out) / f"{cfg.model.name}-seed{seed}"
            runs.append(run_train(cfg, out, data=data, overwrite=True))  # a rerun replaces the run
            print(f"{cfg.model.name} seed {seed}: test AUC {runs[-1]['test']['auc']:.4f} (best epoch {runs[-1]['best_epoch']})", flush=True)
        summary[runs[0]["model"]] = {
            "params": runs[0]["params"],
            "seeds": args.seeds,
            **{f"{split}_{metric}": mean_std([r[split][metric] for r in runs]) for split in ("val", "test") for metric in ("auc", "logloss", "gauc")},
            "test_cold_auc": mean_std([r["test"]["cold"]["auc"] for r in runs]),
            "test_warm_auc": mean_std([r["test"]["warm"]["auc"] for r in runs]),
            "epoch_seconds": statistics.mean(r["epoch_seconds"] for r in runs),
        }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\n| model | params | val AUC | test AUC | test logloss | test GAUC | cold AUC | warm AUC | s/epoch |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, s in summary.items():
        f = lambda k: f"{s[k][0]:.4f} ± {s[k][1]:.4f}"
        print(f"| {name} | {s['params']:,} | {f('val_auc')} | {f('test_auc')} | {f('test_logloss')} | {f('test_gauc')} | {f('test_cold_auc')} | {f('test_warm_auc')} | {s['epoch_seconds']:.1f} |")
    print(f"\n(seeds {args.seeds}; best-validation epoch per run; reproduce: .venv/bin/python benchmarks/train_models.py --seeds {' '.join(map(str, args.seeds))})")


if __name__ == "__main__":
    main()

"""Summarise ``benchmarks/second_spec.sh``'s runs: the share of the no-KD -> best-expert gap
(best expert chosen on validation) the distilled student recovers, over the seeds run.

Reproduce:  bash benchmarks/second_spec.sh runs/second_spec configs/data/ml-100k-interactions.yaml
            .venv/bin/python benchmarks/second_spec_report.py
Writes benchmarks/results/gap_second_spec.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from provenance import provenance


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/second_spec")
    parser.add_argument("--results", default="benchmarks/results")
    args = parser.parse_args()
    out = Path(args.out)
    experts = {p.name: json.loads((p / "metrics.json").read_text()) for p in sorted((out / "teachers").iterdir()) if (p / "metrics.json").exists()}
    best = max(experts, key=lambda n: experts[n]["val"]["auc"])
    runs: dict[str, list[dict]] = {}
    for run in sorted(out.glob("*-seed*")):
        if (run / "metrics.json").exists():
            runs.setdefault(run.name.rsplit("-seed", 1)[0], []).append(json.loads((run / "metrics.json").read_text()))
    if "no_kd" not in runs:
        raise SystemExit(f"{out}: no no_kd runs (run benchmarks/second_spec.sh first)")
    stats = {m: {"test_mean": statistics.mean(r["test"]["auc"] for r in rs), "test_std": statistics.stdev([r["test"]["auc"] for r in rs]) if len(rs) > 1 else 0.0,
                 "val_mean": statistics.mean(r["val"]["auc"] for r in rs), "seeds": [r["seed"] for r in rs],
                 "epochs_run": [len(r["history"]) for r in rs], "best_epoch": [r["best_epoch"] for r in rs]} for m, rs in runs.items()}
    base = stats["no_kd"]["test_mean"]
    ref = experts[best]["test"]["auc"]
    for m, s in stats.items():
        s["gap_vs_best_expert"] = (s["test_mean"] - base) / (ref - base) if ref > base else None
    result = {"spec": json.loads((out / "teachers" / best / "data_spec.json").read_text()).get("path"),
              "experts": {n: {"val": e["val"]["auc"], "test": e["test"]["auc"], "params": e["params"]} for n, e in experts.items()},
              "best_expert": best, "methods": stats, "command": "bash benchmarks/second_spec.sh runs/second_spec configs/data/ml-100k-interactions.yaml && python benchmarks/second_spec_report.py"}
    Path(args.results).mkdir(parents=True, exist_ok=True)
    result["provenance"] = provenance(sorted(m.parent for m in out.rglob("metrics.json")))
    (Path(args.results) / "gap_second_spec.json").write_text(json.dumps(result, indent=2))
    print(f"experts (test AUC): " + ", ".join(f"{n} {e['test']['auc']:.4f} (val {e['val']['auc']:.4f})" for n, e in experts.items()) + f"; best on validation: {best}")
    for m, s in stats.items():
        gap = s["gap_vs_best_expert"]
        print(f"{m}: test AUC {s['test_mean']:.4f} ± {s['test_std']:.4f} over seeds {s['seeds']}, gap recovered {'n/a' if gap is None else f'{100 * gap:.0f}%'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The skip-quality frontier of each gate: gate.json from the reproduction runs and their paired tests.

Reproduce (recommendation, the experts committee, 5 seeds; what this stop ran):
    python benchmarks/reproduce_rec.py --reuse --seeds 0 1 2 3 4 --methods diverse_distill_dense diverse_distill \
        diverse_distill_random diverse_distill_sampled --teacher-dir runs/teachers_spec --out runs/reproduce_spec \
        --results benchmarks/results/gate_rec data.spec=configs/data/ml-100k.yaml
    (budgets 0.5 / 0.7: the same with committee.gate_config.skip_target=B into runs/gate_b05 / runs/gate_b07,
     the dense runs linked in; random without reweighting: committee.gate_config.reweight=false into runs/gate_norw)
    python benchmarks/paired_test.py --domain rec --runs RUNS --seeds 0 1 2 3 4 --a GATE --b diverse_distill_dense
    python benchmarks/paired_test.py --domain rec --runs RUNS --seeds 0 1 2 3 4 --a GATE --b diverse_distill_random
    python benchmarks/gate_report.py --budget 0.3 runs/reproduce_spec benchmarks/results/gate_rec \
        --budget 0.5 runs/gate_b05 benchmarks/results/gate_rec_b05 --budget 0.7 runs/gate_b07 benchmarks/results/gate_rec_b07

For every (gate, budget) with runs and a paired test against dense: the skipped share of teacher
forwards (exact counters, all seeds), test AUC mean and std over seeds, (gated - dense) / dense,
the 95% intervals of gated - dense over test rows and over seeds, and (where run) gated - random
over test rows. Nothing is computed here that the runs and paired tests did not measure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

GATES = {"diverse_distill": "importance", "diverse_distill_random": "random", "diverse_distill_random_norw": "random_no_reweight",
         "diverse_distill_sampled": "sampled"}


def budget_entry(runs: Path, results: Path, method: str, seeds: list[int]) -> dict[str, Any] | None:
    paired = results / f"paired_rec_{method}_vs_diverse_distill_dense.json"
    metrics = [runs / f"{method}-seed{s}" / "metrics.json" for s in seeds]
    if not paired.is_file() or not all(m.is_file() for m in metrics):
        return None
    ms = [json.loads(m.read_text()) for m in metrics]
    p = json.loads(paired.read_text())
    run = sum(m["teacher_forwards"]["run"] for m in ms)
    dense = sum(m["teacher_forwards"]["dense"] for m in ms)
    tests = [m["test"]["auc"] for m in ms]
    entry = {"skipped": 1 - run / dense, "test_mean": statistics.mean(tests), "test_std": statistics.stdev(tests),
             "rel_diff_vs_dense": p["relative"], "ci_rows": p["ci95"], "ci_seeds": p["seed_ci95"], "seeds": seeds}
    vs_random = results / f"paired_rec_{method}_vs_diverse_distill_random.json"
    if vs_random.is_file():
        entry["vs_random_ci_rows"] = json.loads(vs_random.read_text())["ci95"]
    return entry


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", nargs=3, action="append", metavar=("SKIP", "RUNS", "RESULTS"), required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--shipped", default="importance", help="the gate of the shipped configs/*/diverse_distill.yaml")
    parser.add_argument("--out", default="benchmarks/results/gate.json")
    args = parser.parse_args()
    gates: dict[str, Any] = {}
    for skip, runs, results in args.budget:
        for method, name in GATES.items():
            entry = budget_entry(Path(runs), Path(results), method, args.seeds)
            if entry is not None:
                gates.setdefault(name, {"budgets": {}})["budgets"][skip] = entry
    if not gates:
        print("error: no (gate, budget) with runs and a paired test against dense", file=sys.stderr)
        return 2
    payload = {"rec": {"shipped": args.shipped, "shipped_budget": "0.3", "gates": gates},
               "vision": None,  # not run this stop
               "command": "python benchmarks/gate_report.py " + " ".join(sys.argv[1:])}
    Path(args.out).write_text(json.dumps(payload, indent=2))
    print(f"{'gate':20s} {'budget':>6s} {'skipped':>8s} {'test AUC':>16s} {'rel vs dense':>12s} {'ci rows':>20s} {'ci seeds':>20s} {'vs random (rows)':>20s}")
    for name, g in gates.items():
        for skip, e in sorted(g["budgets"].items()):
            fmt = lambda ci: "" if ci is None else f"[{ci[0]:+.4f}, {ci[1]:+.4f}]"  # noqa: E731
            print(f"{name:20s} {skip:>6s} {100 * e['skipped']:7.1f}% {e['test_mean']:.4f} ± {e['test_std']:.4f} {100 * e['rel_diff_vs_dense']:+11.2f}% "
                  f"{fmt(e['ci_rows']):>20s} {fmt(e['ci_seeds']):>20s} {fmt(e.get('vs_random_ci_rows')):>20s}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

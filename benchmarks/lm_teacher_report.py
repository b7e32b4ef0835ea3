"""The LM teacher against the student, and the LM committee's gap recovered the paper's way.

Reads what the runs wrote (nothing is typed in by hand) and writes
benchmarks/results/lm_teacher.json:
  lm_val_auc / lm_test_auc / student_val_auc / student_test_auc: one value per seed;
  lm_margin: the LM's mean validation AUC above the student's, in student standard deviations
    and in the standard deviation of the difference of the two means;
  token_cache: rows, bytes on disk, build seconds (its index.json); lm_epoch_seconds;
  gap_recovered_vs_lm / gap_recovered_vs_best_teacher: {method: mean %} (docs/METHOD.md: 100 (M(method)
    - M(no-KD)) / (M(reference) - M(no-KD)), test AUC, paired by seed), with their std;
  lm_only_share_of_lm_gap: logit KD from the LM alone (the paper: < 40%);
  averaging_vs_single_teacher: average KD against the best single-teacher KD (the paper's point 2).

Reproduce (after the LM seeds, the committee reproduction and the student runs):
    .venv/bin/python benchmarks/lm_teacher_report.py --lm-runs runs/lm_topk --student-runs runs/reproduce_lm \\
        --token-cache runs/lm_tokens --rec benchmarks/results/rec_lm/rec.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import mean_std, plot_gap  # noqa: E402

SINGLE_TEACHER_KD = ("logit_kd[lm]", "logit_kd[dlrm]", "logit_kd[din_dcn]", "ta_kd[lm]")


def seed_runs(folder: Path, pattern: str) -> list[dict[str, Any]]:
    """metrics.json of every ``pattern`` run folder, by seed."""
    runs = [json.loads(p.read_text()) for p in sorted(folder.glob(f"{pattern}/metrics.json"))]
    if not runs:
        raise SystemExit(f"error: no {pattern}/metrics.json under {folder}")
    return sorted(runs, key=lambda m: m["seed"])


def cache_facts(root: Path) -> dict[str, Any]:
    index = json.loads((root / "index.json").read_text())
    return {
        "rows": index["n_rows"], "outputs": index["outputs"], "dtype": index["dtype"],
        "bytes": sum(s["bytes"] for s in index["shards"]), "gib": sum(s["bytes"] for s in index["shards"]) / 2**30,
        "build_seconds": index["seconds"], "rows_per_second": index.get("rows_per_second"),
        "max_abs_error": index["max_abs_error"],
    }


def ablations(specs: list[str]) -> dict[str, Any]:
    """NAME=RUN_DIR -> {name: {val_auc, test_auc, best_epoch, text}} from each run's files."""
    import yaml

    out = {}
    for spec in specs:
        name, _, folder = spec.partition("=")
        m = json.loads((Path(folder) / "metrics.json").read_text())
        params = yaml.safe_load((Path(folder) / "config.yaml").read_text())["model"]["params"]
        out[name] = {"val_auc": m["val"]["auc"], "test_auc": m["test"]["auc"], "best_epoch": m["best_epoch"], "seed": m["seed"],
                     "text": {k: params.get(k) for k in ("history_n", "include_ratings", "include_stats", "id_tokens")}}
    return out


def assistant_facts(folder: Path) -> dict[str, Any] | None:
    """The teacher assistant (LM -> expert-sized model): its size and AUCs, if it was trained."""
    if not (folder / "metrics.json").is_file():
        return None
    m = json.loads((folder / "metrics.json").read_text())
    return {"params": m["student_params"], "val_auc": m["val"]["auc"], "test_auc": m["test"]["auc"], "best_epoch": m["best_epoch"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lm-runs", default="runs/lm_topk", help="folder of the LM teacher's seed runs (seed*/metrics.json)")
    parser.add_argument("--lm-pattern", default="seed*")
    parser.add_argument("--student-runs", default="runs/reproduce_lm", help="folder with the no-KD student runs (no_kd-seed*)")
    parser.add_argument("--token-cache", default="runs/lm_tokens")
    parser.add_argument("--rec", default="benchmarks/results/rec_lm/rec.json", help="reproduce_rec.py's rec.json of the LM committee")
    parser.add_argument("--ablation", nargs="*", default=[], metavar="NAME=RUN_DIR",
                        help="LM runs that changed one thing (e.g. the texts), reported by validation AUC next to the shipped seed 0")
    parser.add_argument("--assistant", default="runs/teachers_lm/ta_assistant", help="the teacher assistant's run (its metrics.json)")
    parser.add_argument("--out", default="benchmarks/results/lm_teacher.json")
    args = parser.parse_args()

    lm = seed_runs(Path(args.lm_runs), args.lm_pattern)
    student = seed_runs(Path(args.student_runs), "no_kd-seed*")
    lm_val, student_val = [m["val"]["auc"] for m in lm], [m["val"]["auc"] for m in student]
    diff = statistics.mean(lm_val) - statistics.mean(student_val)
    sd_student = statistics.stdev(student_val) if len(student_val) > 1 else 0.0
    sd_diff = (statistics.variance(lm_val) / len(lm_val) + statistics.variance(student_val) / len(student_val)) ** 0.5 \
        if len(lm_val) > 1 and len(student_val) > 1 else 0.0
    rec = json.loads(Path(args.rec).read_text())
    methods = rec["methods"]

    def gaps(reference: str) -> dict[str, list[float]]:
        return {m: r["gap_vs"][reference] for m, r in methods.items() if "gap_vs" in r and reference in r["gap_vs"]}

    singles = {m: methods[m]["test_auc"][0] for m in SINGLE_TEACHER_KD if m in methods}
    best_single = max(singles, key=singles.get) if singles else None
    payload = {
        "lm_val_auc": lm_val,
        "lm_test_auc": [m["test"]["auc"] for m in lm],
        "lm_seeds": [m["seed"] for m in lm],
        "student_val_auc": student_val,
        "student_test_auc": [m["test"]["auc"] for m in student],
        "student_seeds": [m["seed"] for m in student],
        "lm_val_auc_mean_std": mean_std(lm_val),
        "student_val_auc_mean_std": mean_std(student_val),
        "lm_margin": {"val_auc": diff, "student_stds": diff / sd_student if sd_student else None,
                      "difference_stds": diff / sd_diff if sd_diff else None},
        "lm_epoch_seconds": statistics.mean(m["epoch_seconds"] for m in lm),
        "lm_params": lm[0]["params"],
        "lm_cold_val_auc": [m["val"]["cold"]["auc"] for m in lm],
        "token_cache": cache_facts(Path(args.token_cache)) if (Path(args.token_cache) / "index.json").is_file() else None,
        "teachers_test_auc": rec["teachers_test_auc"],
        "gap_recovered_vs_lm": {m: g[0] for m, g in gaps("lm").items()},
        "gap_recovered_vs_lm_std": {m: g[1] for m, g in gaps("lm").items()},
        "gap_recovered_vs_best_teacher": {m: g[0] for m, g in gaps("best_teacher").items()},
        "test_auc": {m: r["test_auc"] for m, r in methods.items()},
        "seeds": {m: r["seeds"] for m, r in methods.items()},
        "forwards_skipped": {m: r["forwards_skipped"] for m, r in methods.items()},
        "lm_only_share_of_lm_gap": gaps("lm").get("logit_kd[lm]", [None])[0],
        "averaging_vs_single_teacher": None if "avg_kd" not in methods or best_single is None else {
            "avg_kd_test_auc": methods["avg_kd"]["test_auc"][0], "best_single_teacher_kd": best_single,
            "best_single_test_auc": singles[best_single], "avg_below_single": methods["avg_kd"]["test_auc"][0] < singles[best_single],
        },
        "ablation_val_auc": ablations(args.ablation),
        "teacher_assistant": assistant_facts(Path(args.assistant)),
        "command": "benchmarks/lm_teacher_report.py " + shlex.join(sys.argv[1:]),
        "rec_command": rec.get("command"),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    plot_gap(methods, out.with_suffix(".png"), "lm",
             f"MovieLens-100K: share of the LM-student test-AUC gap recovered ({len(lm)}-seed LM, seeds {methods['no_kd']['seeds']})")
    print(f"LM val AUC {payload['lm_val_auc_mean_std'][0]:.4f} ± {payload['lm_val_auc_mean_std'][1]:.4f} vs student "
          f"{payload['student_val_auc_mean_std'][0]:.4f} ± {payload['student_val_auc_mean_std'][1]:.4f}: +{diff:.4f} "
          f"({payload['lm_margin']['student_stds']:.1f} student std)")
    for m, g in gaps("lm").items():
        print(f"  {m:28s} gap vs LM {g[0]:6.1f}% ± {g[1]:.1f}   vs best teacher {methods[m]['gap_vs']['best_teacher'][0]:6.1f}%")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""Recommendation reproduction: every method x seeds on MovieLens-100K, gap recovered, plots.

Reproduce (teachers trained once by `benchmarks/train_models.py` or `make demo`):
    .venv/bin/python benchmarks/reproduce_rec.py --seeds 0 1 2 --teacher-dir runs/teachers

Model selection is on validation only (best-validation epoch of each run); test metrics are
read once from that epoch. gap% = 100 (M(method) - M(no-KD)) / (M(teacher) - M(no-KD)), with
M = test AUC, against each teacher and the best one. Writes benchmarks/results/rec.json,
rec.md and rec_gap.png.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import mean_std, paired_gaps, plot_gap, plot_val_curves, reusable_metrics  # noqa: E402

from recsys_committee.train.config import load_config  # noqa: E402
from recsys_committee.rec_domain import run_distill  # noqa: E402
from recsys_committee.rec_domain import load_data  # noqa: E402

METHOD_CONFIGS = {
    "no_kd": "no_kd.yaml",
    "logit_kd[dlrm]": "logit_kd_dlrm.yaml",
    "logit_kd[din_dcn]": "logit_kd_din_dcn.yaml",
    "logit_kd[lm]": "logit_kd_lm.yaml",
    "feature_kd[dlrm]": "feature_kd_dlrm.yaml",
    "feature_kd[din_dcn]": "feature_kd_din_dcn.yaml",
    "avg_kd": "avg_kd.yaml",
    "camkd": "camkd.yaml",
    "diverse_distill_dense": "diverse_distill_dense.yaml",
    "diverse_distill": "diverse_distill.yaml",
    "diverse_distill_importance": "diverse_distill_importance.yaml",
    "diverse_distill_random": "diverse_distill_random.yaml",
    "diverse_distill_sampled": "diverse_distill_sampled.yaml",
    "diverse_distill_value": "diverse_distill_value.yaml",
    "diverse_distill_value_sample": "diverse_distill_value_sample.yaml",
    "diverse_distill_unic": "diverse_distill_unic.yaml",
    "ta_kd[lm]": "ta_kd_lm.yaml",  # teacher assistant: LM -> expert-sized model -> student
}
# Methods whose config names its own teacher (the assistant): --teachers does not replace it.
OWN_TEACHERS = {"ta_kd[lm]"}


def teacher_test_auc(teacher_dir: Path) -> dict[str, float]:
    out = {}
    for name, folder in (("dlrm", "expert_dlrm"), ("din_dcn", "expert_din_dcn"), ("lm", "lm_teacher")):
        metrics = teacher_dir / folder / "metrics.json"
        if metrics.exists():
            out[name] = json.loads(metrics.read_text())["test"]["auc"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", choices=list(METHOD_CONFIGS), help="default: every method (logit_kd[lm] only with --teachers)")
    parser.add_argument("--teacher-dir", default="runs/teachers")
    parser.add_argument("--out", default="runs/reproduce_rec")
    parser.add_argument("--results", default="benchmarks/results")
    parser.add_argument("--teachers", help="YAML file with a `teachers:` list replacing the base config's (e.g. the LM committee)")
    parser.add_argument("--reuse", action="store_true", help="read runs whose metrics.json already exists instead of re-running them")
    parser.add_argument("overrides", nargs="*", help="key.sub=value applied to every run")
    args = parser.parse_args()
    teachers = teacher_test_auc(Path(args.teacher_dir))
    extra, committee = list(args.overrides), []
    if args.teachers:
        import yaml

        spec = yaml.safe_load(Path(args.teachers).read_text())["teachers"]
        committee.append("teachers=" + json.dumps(spec))  # JSON is valid YAML flow syntax
    if args.methods is None:  # the LM baselines need a committee that has the LM
        args.methods = [m for m in METHOD_CONFIGS if args.teachers or m not in ("logit_kd[lm]", "ta_kd[lm]")]
    if not args.teachers and "logit_kd[lm]" in args.methods:
        parser.error("logit_kd[lm] needs --teachers with an lm teacher (configs/rec/teachers/experts_lm.yaml)")
    data, results, per_seed_auc, histories = None, {}, {}, {}
    for method in args.methods:
        runs = []
        for seed in args.seeds:
            teachers_override = [] if method in OWN_TEACHERS else committee
            cfg = load_config(Path("configs/rec") / METHOD_CONFIGS[method],
                              [f"seed={seed}", f"teacher_dir={args.teacher_dir}", "train.progress=false", *teachers_override, *extra])
            run_dir = Path(args.out) / f"{method}-seed{seed}"
            start = time.perf_counter()
            m = reusable_metrics(run_dir, cfg) if args.reuse else None
            if m is None:
                data = data or load_data(cfg.data)
                m = run_distill(cfg, run_dir, data=data, overwrite=True)  # a rerun replaces the run (--reuse reads it)
            f = m["teacher_forwards"]
            print(f"{method} seed {seed}: val {m['val']['auc']:.4f} test {m['test']['auc']:.4f} forwards {f['run']}/{f['dense']} ({time.perf_counter() - start:.0f}s)", flush=True)
            runs.append(m)
        per_seed_auc[method] = [r["test"]["auc"] for r in runs]
        histories[method] = [r["history"] for r in runs]
        forwards_run = sum(r["teacher_forwards"]["run"] for r in runs)
        forwards_dense = sum(r["teacher_forwards"]["dense"] for r in runs)
        results[method] = {
            "val_auc": mean_std([r["val"]["auc"] for r in runs]),
            "test_auc": mean_std([r["test"]["auc"] for r in runs]),
            "test_logloss": mean_std([r["test"]["logloss"] for r in runs]),
            "test_gauc": mean_std([r["test"]["gauc"] for r in runs]),
            "test_cold_auc": mean_std([r["test"]["cold"]["auc"] for r in runs]),
            "test_warm_auc": mean_std([r["test"]["warm"]["auc"] for r in runs]),
            "student_params": runs[0]["student_params"],
            "teacher_params": runs[0]["teacher_params"],
            "compression": {t: p / runs[0]["student_params"] for t, p in runs[0]["teacher_params"].items() if p},
            "teacher_forwards": {"run": forwards_run, "dense": forwards_dense},
            "forwards_skipped": 1 - forwards_run / forwards_dense if forwards_dense else None,
            "epoch_seconds": statistics.mean(r["epoch_seconds"] for r in runs),
            "seeds": args.seeds,
        }
    base = results.get("no_kd", {}).get("test_auc")
    if base and teachers:
        # Paired by seed: the same seed's no-KD run is each run's anchor, which removes the
        # seed-to-seed spread (larger than the effects measured here) from the comparison.
        refs = {**teachers, "best_teacher": max(teachers.values())}
        for method, extra in paired_gaps(per_seed_auc, refs, base[0]).items():
            results[method]["test_auc_delta_vs_no_kd"] = extra["delta"]
            results[method]["gap_vs"] = extra["gap_vs"]
    results_dir = Path(args.results)
    results_dir.mkdir(parents=True, exist_ok=True)
    payload = {"teachers_test_auc": teachers, "methods": results, "command": "benchmarks/reproduce_rec.py " + shlex.join(sys.argv[1:])}
    (results_dir / "rec.json").write_text(json.dumps(payload, indent=2))
    lines = ["| method | test AUC | Δ vs no-KD (paired) | val AUC | logloss | cold AUC | warm AUC | gap vs best teacher | forwards skipped | s/epoch |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for method, r in results.items():
        gap = r.get("gap_vs", {}).get("best_teacher")
        d = r.get("test_auc_delta_vs_no_kd")
        delta = "" if d is None else f"{d[0]:+.4f} ± {d[1]:.4f}"
        skipped = "" if r["forwards_skipped"] is None else f"{100 * r['forwards_skipped']:.1f}%"
        lines.append(
            f"| {method} | {r['test_auc'][0]:.4f} ± {r['test_auc'][1]:.4f} | {delta} | {r['val_auc'][0]:.4f} | {r['test_logloss'][0]:.4f} | "
            f"{r['test_cold_auc'][0]:.4f} | {r['test_warm_auc'][0]:.4f} | {'' if gap is None else f'{gap[0]:.0f}% ± {gap[1]:.0f}'} | {skipped} | {r['epoch_seconds']:.1f} |"
        )
    teachers_line = ", ".join(f"{k} {v:.4f}" for k, v in teachers.items())
    table = "\n".join(lines) + f"\n\nTeachers (test AUC): {teachers_line}. Seeds {args.seeds}.\n"
    (results_dir / "rec.md").write_text(table)
    print("\n" + table)
    if base and teachers:
        plot_gap(results, results_dir / "rec_gap.png", "best_teacher", "MovieLens-100K: share of the teacher-student test-AUC gap recovered")
    plot_val_curves(histories, "val_auc", results_dir / "rec_val_curves.png", "MovieLens-100K: validation AUC per epoch (mean over seeds)")


if __name__ == "__main__":
    main()

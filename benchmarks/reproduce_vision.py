"""Vision reproduction: every method x seeds on Fashion-MNIST, gap recovered, plots.

Reproduce (trains the three teachers first when {teacher-dir}/<name>/model.safetensors is missing):
    .venv/bin/python benchmarks/reproduce_vision.py --seeds 0 1 2

Teachers are trained once (seed 0) on 20,000 training images; every student run distils on
the first data.max_rows images of the same shuffle (configs/vision/base.yaml). Model selection
is on the 5,000 validation images only (best-validation epoch); test top-1 is read once from
that epoch, on the official 10,000 test images. Writes benchmarks/results/vision.json,
vision.md, vision_gap.png and vision_val_curves.png.
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
from vision_committee.models import imagenet_mobilenet_v2_params  # noqa: E402
from vision_committee.domain import load_vision_data, run_vision_distill, run_vision_train  # noqa: E402

CONFIGS = Path("configs/vision")
TEACHERS = {"foundation": "foundation.yaml", "expert_wide": "expert_wide.yaml", "expert_deep": "expert_deep.yaml"}
METHOD_CONFIGS = {
    "no_kd": "no_kd.yaml",
    "logit_kd[foundation]": "logit_kd_foundation.yaml",
    "logit_kd[expert_wide]": "logit_kd_expert_wide.yaml",
    "logit_kd[expert_deep]": "logit_kd_expert_deep.yaml",
    "feature_kd[foundation]": "feature_kd_foundation.yaml",
    "avg_kd": "avg_kd.yaml",
    "camkd": "camkd.yaml",
    "diverse_distill_dense": "diverse_distill_dense.yaml",
    "diverse_distill": "diverse_distill.yaml",
    "diverse_distill_importance": "diverse_distill_importance.yaml",
    "diverse_distill_random": "diverse_distill_random.yaml",
    "diverse_distill_value": "diverse_distill_value.yaml",
    "diverse_distill_unic": "diverse_distill_unic.yaml",
    "diverse_distill_value_sample": "diverse_distill_value_sample.yaml",
    "diverse_distill_sampled": "diverse_distill_sampled.yaml",
}


def ensure_teachers(teacher_dir: Path, overrides: list[str]) -> dict[str, dict]:
    """Each teacher's metrics.json, training the missing ones (seed 0)."""
    out = {}
    for name, config in TEACHERS.items():
        run_dir = teacher_dir / name
        if not (run_dir / "model.safetensors").exists() or not (run_dir / "metrics.json").exists():
            start = time.perf_counter()
            cfg = load_config(CONFIGS / config, ["train.progress=false", *overrides])
            run_vision_train(cfg, run_dir, overwrite=True)  # a teacher folder without its model file is an unfinished run
            print(f"trained teacher {name} in {time.perf_counter() - start:.0f}s", flush=True)
        out[name] = json.loads((run_dir / "metrics.json").read_text())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHOD_CONFIGS), choices=list(METHOD_CONFIGS))
    parser.add_argument("--teacher-dir", default="runs/vision_teachers")
    parser.add_argument("--out", default="runs/reproduce_vision")
    parser.add_argument("--results", default="benchmarks/results")
    parser.add_argument("--reuse", action="store_true", help="read runs whose metrics.json already exists instead of re-running them")
    parser.add_argument("overrides", nargs="*", help="key.sub=value applied to every student run")
    args = parser.parse_args()
    teacher_metrics = ensure_teachers(Path(args.teacher_dir), [])
    teachers = {name: m["test"]["top1"] for name, m in teacher_metrics.items()}
    data, results, per_seed, histories = None, {}, {}, {}
    for method in args.methods:
        runs = []
        for seed in args.seeds:
            cfg = load_config(CONFIGS / METHOD_CONFIGS[method], [f"seed={seed}", f"teacher_dir={args.teacher_dir}", "train.progress=false", *args.overrides])
            run_dir = Path(args.out) / f"{method}-seed{seed}"
            start = time.perf_counter()
            m = reusable_metrics(run_dir, cfg) if args.reuse else None
            if m is None:
                data = data or load_vision_data(cfg)
                m = run_vision_distill(cfg, run_dir, data=data, overwrite=True)  # a rerun replaces the run (--reuse reads it)
            f = m["teacher_forwards"]
            print(f"{method} seed {seed}: val {m['val']['top1']:.4f} test {m['test']['top1']:.4f} forwards {f['run']}/{f['dense']} ({time.perf_counter() - start:.0f}s)", flush=True)
            runs.append(m)
        per_seed[method] = [r["test"]["top1"] for r in runs]
        histories[method] = [r["history"] for r in runs]
        run_, dense = sum(r["teacher_forwards"]["run"] for r in runs), sum(r["teacher_forwards"]["dense"] for r in runs)
        results[method] = {
            "val_top1": mean_std([r["val"]["top1"] for r in runs]),
            "test_top1": mean_std(per_seed[method]),
            "test_logloss": mean_std([r["test"]["logloss"] for r in runs]),
            "student_params": runs[0]["student_params"],
            "teacher_forwards": {"run": run_, "dense": dense},
            "forwards_skipped": 1 - run_ / dense if dense else None,
            "epoch_seconds": statistics.mean(r["epoch_seconds"] for r in runs),
            "train_rows": runs[0]["train_rows"],
            "seeds": args.seeds,
        }
    if "no_kd" in results:  # the gap's anchor; gate comparisons (paired_test.py) run without it
        base = results["no_kd"]["test_top1"][0]
        refs = {"foundation": teachers["foundation"], "best_teacher": max(teachers.values())}
        for method, extra in paired_gaps(per_seed, refs, base).items():
            results[method]["test_top1_delta_vs_no_kd"] = extra["delta"]
            results[method]["gap_vs"] = extra["gap_vs"]
    student_params = next(iter(results.values()))["student_params"]
    imagenet_params = imagenet_mobilenet_v2_params()  # counted on the model loaded from data/weights
    compression = {
        "student_params": student_params,
        "foundation_imagenet_params": imagenet_params,
        "foundation_finetuned_params": teacher_metrics["foundation"]["params"],
        "ratio_vs_imagenet_model": imagenet_params / student_params,
        "ratio_vs_finetuned_model": teacher_metrics["foundation"]["params"] / student_params,
    }
    results_dir = Path(args.results)
    results_dir.mkdir(parents=True, exist_ok=True)
    command = "benchmarks/reproduce_vision.py " + shlex.join(sys.argv[1:])
    payload = {
        "teachers": {n: {"test_top1": m["test"]["top1"], "val_top1": m["val"]["top1"], "params": m["params"], "train_rows": m["train_rows"],
                         "epoch_seconds": m["epoch_seconds"]} for n, m in teacher_metrics.items()},
        "compression": compression, "methods": results, "command": command,
    }
    (results_dir / "vision.json").write_text(json.dumps(payload, indent=2))
    lines = ["| method | test top-1 | Δ vs no-KD (paired) | val top-1 | gap vs foundation | gap vs best teacher | forwards skipped | s/epoch |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    nan2 = (float("nan"), float("nan"))
    for method, r in results.items():
        d = r.get("test_top1_delta_vs_no_kd", nan2)
        gf, gb = r.get("gap_vs", {}).get("foundation", nan2), r.get("gap_vs", {}).get("best_teacher", nan2)
        skipped = "" if r["forwards_skipped"] is None else f"{100 * r['forwards_skipped']:.1f}%"
        lines.append(f"| {method} | {r['test_top1'][0]:.4f} ± {r['test_top1'][1]:.4f} | {d[0]:+.4f} ± {d[1]:.4f} | {r['val_top1'][0]:.4f} | "
                     f"{gf[0]:.0f}% ± {gf[1]:.0f} | {gb[0]:.0f}% ± {gb[1]:.0f} | {skipped} | {r['epoch_seconds']:.1f} |")
    teacher_line = ", ".join(f"{n} {m['test']['top1']:.4f} ({m['params']:,} params, {m['epoch_seconds']:.0f} s/epoch)" for n, m in teacher_metrics.items())
    table = "\n".join(lines) + (
        f"\n\nTeachers (test top-1, seed 0): {teacher_line}. Student {student_params:,} params: "
        f"{compression['ratio_vs_imagenet_model']:.2f}x smaller than the ImageNet MobileNetV2 ({imagenet_params:,}), "
        f"{compression['ratio_vs_finetuned_model']:.2f}x than the fine-tuned 10-class one. Seeds {args.seeds}; "
        f"{next(iter(results.values()))['train_rows']:,} training images per student run. Command: `{command}`.\n"
    )
    (results_dir / "vision.md").write_text(table)
    print("\n" + table)
    plot_gap(results, results_dir / "vision_gap.png", "foundation", "Fashion-MNIST: share of the foundation-student test top-1 gap recovered")
    plot_val_curves(histories, "val_top1", results_dir / "vision_val_curves.png", "Fashion-MNIST: validation top-1 per epoch (mean over seeds)")


if __name__ == "__main__":
    main()

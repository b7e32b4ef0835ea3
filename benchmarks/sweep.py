"""One training setting swept side by side: the best expert (DIN+DCN), the no-KD student and the
student taught by that expert (logit KD), each value over seeds, through the CLI as a user would
run them. ``batch_size.py`` and ``user_dropout.py`` are the two sweeps; each one's docstring says
why and how to reproduce it.

A sweep of a setting every model has (the batch size) trains the expert at each value; a sweep of
a student-only setting (``student_only``) trains the expert once per seed (or reads the experts
of ``--expert-dir``) and teaches every value's KD student from it. Every run uses
``train.epochs=2 train.patience=1``: the best epoch is the first one in every run recorded so far,
the second shows the fall. Writes ``benchmarks/results/<name>_<spec>.json`` and ``.png``; the
share of the gap logit KD recovers is null when the expert is not 2 no-KD seed stds above the
no-KD student.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from provenance import provenance  # noqa: E402
from report import _plt, gap, mean_std  # noqa: E402

CLI = str(ROOT / ".venv" / "bin" / "recsys-committee")
SCHEDULE = ["train.epochs=2", "train.patience=1", "train.progress=false"]
MODELS = ("expert_din_dcn", "no_kd", "logit_kd_din_dcn")


@dataclass(frozen=True)
class Sweep:
    key: str  # the config key swept (an override: key=value)
    name: str  # results file stem and JSON key (by_<name>)
    label: str  # run folder prefix per value
    values: tuple  # default values
    cast: Callable[[str], Any] = int
    student_only: bool = False  # the expert is trained once per seed, at its config's setting
    log_x: bool = False
    axis: str = ""


def slug(value: Any) -> str:
    """A value as a run-folder and JSON key part with no dot (README sources split on dots)."""
    return str(value).replace(".", "_")


def run_dir(sweep: Sweep, out: Path, model: str, value: Any, seed: int, expert_dir: Optional[Path] = None) -> Path:
    if model.startswith("expert_") and sweep.student_only:
        return (expert_dir or out / "experts") / f"{model}-seed{seed}"
    return out / f"{sweep.label}{slug(value)}" / f"{model}-seed{seed}"


def command(sweep: Sweep, model: str, value: Any, seed: int, out: Path, data: str, extra: list[str], expert_dir: Optional[Path] = None) -> list[str]:
    """The CLI line of one run: experts `train`, students `distill` (KD from the expert of the same
    seed, trained at the same value unless the setting is the student's alone)."""
    target = run_dir(sweep, out, model, value, seed, expert_dir)
    setting = [] if model.startswith("expert_") and sweep.student_only else [f"{sweep.key}={value}"]
    common = ["--data", data, "--out", str(target), "--overwrite", f"seed={seed}", *setting, *SCHEDULE, *extra]
    if model.startswith("expert_"):
        return [CLI, "train", "--config", f"configs/rec/{model}.yaml", *common]
    teacher = run_dir(sweep, out, "expert_din_dcn", value, seed, expert_dir) / "model.safetensors"
    teachers = json.dumps([{"name": "din_dcn", "kind": "rec_model", "checkpoint": str(teacher), "tap": "mlp"}])
    return [CLI, "distill", "--config", f"configs/rec/{model}.yaml", *common, f"teachers={teachers}"]


def run(sweep: Sweep, model: str, value: Any, seed: int, out: Path, data: str, extra: list[str], threads: int,
        expert_dir: Optional[Path] = None) -> dict[str, Any]:
    target = run_dir(sweep, out, model, value, seed, expert_dir)
    if not (target / "metrics.json").exists():
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.parent / f"{target.name}.log", "w") as log:
            subprocess.run(command(sweep, model, value, seed, out, data, extra, expert_dir), cwd=ROOT, env=env, stdout=log,
                           stderr=subprocess.STDOUT, check=True)
    metrics = json.loads((target / "metrics.json").read_text())
    print(f"{sweep.key}={value} seed {seed} {model:18s} val {metrics['val']['auc']:.4f} test {metrics['test']['auc']:.4f}", flush=True)
    return metrics


def summarise(runs: dict[tuple[str, Any], list[dict[str, Any]]], values: list[Any]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for value in values:
        entry: dict[str, Any] = {}
        for model in MODELS:
            found = runs.get((model, value), [])
            if not found:
                continue
            test = mean_std([m["test"]["auc"] for m in found])
            entry[model] = {"val_mean": statistics.mean(m["val"]["auc"] for m in found), "test_mean": test[0], "test_std": test[1],
                            "test_per_seed": [m["test"]["auc"] for m in found], "best_epoch": [m["best_epoch"] for m in found],
                            "seconds_per_epoch": statistics.mean(statistics.mean(h["seconds"] for h in m["history"]) for m in found)}
        if all(m in entry for m in MODELS):
            teacher, base, kd = (entry[m]["test_mean"] for m in MODELS)
            entry["kd_gap_recovered"], why = gap(kd, base, entry["no_kd"]["test_std"], teacher, "expert")
            if why:
                entry["kd_gap_why"] = why
            entry["teacher_minus_no_kd_test"] = teacher - base
        table[slug(value)] = entry
    return table


def plot(sweep: Sweep, table: dict[str, Any], values: list[Any], path: Path, title: str) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, split in zip(axes, ("val_mean", "test_mean")):
        for model in MODELS:
            xs = [v for v in values if model in table[slug(v)]]
            ax.plot(xs, [table[slug(v)][model][split] for v in xs], "o-", label=model)
        if sweep.log_x:
            ax.set_xscale("log", base=2)
        ax.set_xlabel(sweep.axis or sweep.key)
        ax.set_ylabel(split.replace("_mean", " AUC (seed mean)"))
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(sweep: Sweep, doc: str, script: str) -> int:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--data", default="configs/data/ml-100k.yaml")
    parser.add_argument("--values", type=sweep.cast, nargs="+", default=list(sweep.values), help=f"values of {sweep.key}")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (each gets cores // jobs threads)")
    parser.add_argument("--out", default=None, help=f"default: runs/{sweep.name}/<spec name>")
    if sweep.student_only:
        parser.add_argument("--expert-dir", default=None, help="read the experts here (<dir>/expert_din_dcn-seed<s>) instead of training them")
    parser.add_argument("--results", default="benchmarks/results")
    parser.add_argument("overrides", nargs="*", help="key.sub=value applied to every run")
    args = parser.parse_args()
    spec = Path(args.data).stem
    out = Path(args.out or f"runs/{sweep.name}/{spec}")
    expert_dir = Path(args.expert_dir) if getattr(args, "expert_dir", None) else None
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    plan = [(v, s) for v in args.values for s in args.seeds]
    runs: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    with ThreadPoolExecutor(args.jobs) as pool:  # experts and no-KD first (the KD runs read the experts)
        for phase in (("expert_din_dcn", "no_kd"), ("logit_kd_din_dcn",)):
            wanted = [(m, v, s) for v, s in plan for m in phase]
            if sweep.student_only and "expert_din_dcn" in phase:  # one expert per seed, shared by every value
                wanted = [(m, v, s) for m, v, s in wanted if m != "expert_din_dcn"] + [("expert_din_dcn", args.values[0], s) for s in args.seeds]
            jobs = {(m, v, s): pool.submit(run, sweep, m, v, s, out, args.data, args.overrides, threads, expert_dir) for m, v, s in wanted}
            for (m, v, s), job in jobs.items():
                metrics = job.result()
                for value in (args.values if m == "expert_din_dcn" and sweep.student_only else [v]):
                    runs.setdefault((m, value), []).append(metrics)
    table = summarise(runs, args.values)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    payload = {"spec": args.data, "key": sweep.key, "seeds": args.seeds, "schedule": SCHEDULE, "overrides": args.overrides, f"by_{sweep.name}": table,
               "command": f".venv/bin/python benchmarks/{script} {' '.join(sys.argv[1:])}".strip(),
               "provenance": provenance(sorted({p.parent for d in (out, expert_dir) if d for p in d.rglob("metrics.json")}))}
    (results / f"{sweep.name}_{spec}.json").write_text(json.dumps(payload, indent=2))
    plot(sweep, table, args.values, results / f"{sweep.name}_{spec}.png", f"{spec}: AUC by {sweep.axis or sweep.key}, seeds {args.seeds}")
    print(f"\n{sweep.key:>24} " + " ".join(f"{m + ' val/test':>34}" for m in MODELS) + "  KD share of gap")
    for value in args.values:
        entry = table[slug(value)]
        cells = [f"{entry[m]['val_mean']:.4f} / {entry[m]['test_mean']:.4f} ± {entry[m]['test_std']:.4f}" if m in entry else "-" for m in MODELS]
        share = entry.get("kd_gap_recovered")
        print(f"{value!s:>24} " + " ".join(f"{c:>34}" for c in cells) + f"  {'n/a' if share is None else f'{100 * share:.0f}%'}")
    print(f"wrote {results / f'{sweep.name}_{spec}.json'} and .png")
    return 0

"""Steps per epoch: validation and test AUC of the best expert (DIN+DCN), the no-KD student and
the student taught by that expert (logit KD) at several batch sizes, side by side.

Why: every recommendation model here peaks in its first epoch and then overfits (the one-epoch
pattern of ID-embedding CTR models), so a second epoch is no way to teach longer; the number of
updates within that first epoch is. This measures what the shipped batch size (512) leaves on
the table for each model, and whether a teacher trained with more steps gives distillation more
to transfer (the share of the teacher-student gap logit KD recovers at each batch size).

Reproduce (each run through the CLI as a user would, 2 at a time; ~25 minutes per spec on 2 cores):
    .venv/bin/python benchmarks/batch_size.py --batch-sizes 512 128 64 --seeds 0 1 2
    .venv/bin/python benchmarks/batch_size.py --data configs/data/ml-100k-interactions.yaml --batch-sizes 512 128 64 --seeds 0 1 2
Runs land in ``--out`` (finished ones are read, not rerun); writes
``benchmarks/results/batch_size_<spec>.json`` and ``batch_size_<spec>.png``. Every run uses
``train.epochs=2 train.patience=1`` (the best epoch is the first one in every run recorded so
far; the second shows the fall). The teacher of the KD run with seed s is the expert trained
with seed s at the same batch size. Choices read validation; test is reported beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from provenance import provenance  # noqa: E402
from report import _plt, mean_std  # noqa: E402

CLI = str(ROOT / ".venv" / "bin" / "recsys-committee")
SCHEDULE = ["train.epochs=2", "train.patience=1", "train.progress=false"]
MODELS = ("expert_din_dcn", "no_kd", "logit_kd_din_dcn")


def run_dir(out: Path, model: str, batch: int, seed: int) -> Path:
    return out / f"bs{batch}" / f"{model}-seed{seed}"


def command(model: str, batch: int, seed: int, out: Path, data: str, extra: list[str]) -> list[str]:
    """The CLI line of one run: experts `train`, students `distill` (KD from the same-batch expert)."""
    target = run_dir(out, model, batch, seed)
    common = ["--data", data, "--out", str(target), "--overwrite", f"seed={seed}", f"train.batch_size={batch}", *SCHEDULE, *extra]
    if model.startswith("expert_"):
        return [CLI, "train", "--config", f"configs/rec/{model}.yaml", *common]
    teacher = run_dir(out, "expert_din_dcn", batch, seed) / "model.safetensors"
    teachers = json.dumps([{"name": "din_dcn", "kind": "rec_model", "checkpoint": str(teacher), "tap": "mlp"}])
    return [CLI, "distill", "--config", f"configs/rec/{model}.yaml", *common, f"teachers={teachers}"]


def run(model: str, batch: int, seed: int, out: Path, data: str, extra: list[str], threads: int) -> dict[str, Any]:
    target = run_dir(out, model, batch, seed)
    if not (target / "metrics.json").exists():
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.parent / f"{target.name}.log", "w") as log:
            subprocess.run(command(model, batch, seed, out, data, extra), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
    metrics = json.loads((target / "metrics.json").read_text())
    print(f"bs {batch:4d} seed {seed} {model:18s} val {metrics['val']['auc']:.4f} test {metrics['test']['auc']:.4f}", flush=True)
    return metrics


def summarise(runs: dict[tuple[str, int], list[dict[str, Any]]], batches: list[int]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for batch in batches:
        entry: dict[str, Any] = {}
        for model in MODELS:
            found = runs.get((model, batch), [])
            if not found:
                continue
            test = mean_std([m["test"]["auc"] for m in found])
            entry[model] = {"val_mean": statistics.mean(m["val"]["auc"] for m in found), "test_mean": test[0], "test_std": test[1],
                            "test_per_seed": [m["test"]["auc"] for m in found], "best_epoch": [m["best_epoch"] for m in found],
                            "seconds_per_epoch": statistics.mean(statistics.mean(h["seconds"] for h in m["history"]) for m in found)}
        if all(m in entry for m in MODELS):
            teacher, base, kd = (entry[m]["test_mean"] for m in MODELS)
            entry["kd_gap_recovered"] = (kd - base) / (teacher - base) if teacher - base > 2 * entry["no_kd"]["test_std"] and teacher > base else None
            entry["teacher_minus_no_kd_test"] = teacher - base
        table[str(batch)] = entry
    return table


def plot(table: dict[str, Any], path: Path, title: str) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=False)
    batches = [int(b) for b in table]
    for ax, split in zip(axes, ("val_mean", "test_mean")):
        for model in MODELS:
            xs = [b for b in batches if model in table[str(b)]]
            ax.plot(xs, [table[str(b)][model][split] for b in xs], "o-", label=model)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size (rows per update)")
        ax.set_ylabel(split.replace("_mean", " AUC (seed mean)"))
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="configs/data/ml-100k.yaml")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[512, 128, 64])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (each gets cores // jobs threads)")
    parser.add_argument("--out", default=None, help="default: runs/batch_size/<spec name>")
    parser.add_argument("--results", default="benchmarks/results")
    parser.add_argument("overrides", nargs="*", help="key.sub=value applied to every run")
    args = parser.parse_args()
    spec = Path(args.data).stem
    out = Path(args.out or f"runs/batch_size/{spec}")
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    plan = [(b, s) for b in args.batch_sizes for s in args.seeds]
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    with ThreadPoolExecutor(args.jobs) as pool:  # experts and no-KD first (the KD runs read the experts)
        for phase in (("expert_din_dcn", "no_kd"), ("logit_kd_din_dcn",)):
            jobs = {(m, b, s): pool.submit(run, m, b, s, out, args.data, args.overrides, threads) for b, s in plan for m in phase}
            for (m, b, s), job in jobs.items():
                runs.setdefault((m, b), []).append(job.result())
    table = summarise(runs, args.batch_sizes)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    argv = " ".join(sys.argv[1:])
    payload = {"spec": args.data, "seeds": args.seeds, "schedule": SCHEDULE, "overrides": args.overrides, "by_batch_size": table,
               "command": f".venv/bin/python benchmarks/batch_size.py {argv}".strip(),
               "provenance": provenance(sorted(p.parent for p in out.rglob("metrics.json")))}
    (results / f"batch_size_{spec}.json").write_text(json.dumps(payload, indent=2))
    plot(table, results / f"batch_size_{spec}.png", f"{spec}: AUC by batch size, seeds {args.seeds}")
    print(f"\n{'batch':>5} " + " ".join(f"{m + ' val/test':>34}" for m in MODELS) + "  KD share of gap")
    for batch, entry in table.items():
        cells = [f"{entry[m]['val_mean']:.4f} / {entry[m]['test_mean']:.4f} ± {entry[m]['test_std']:.4f}" if m in entry else "-" for m in MODELS]
        share = entry.get("kd_gap_recovered")
        print(f"{batch:>5} " + " ".join(f"{c:>34}" for c in cells) + f"  {'n/a' if share is None else f'{100 * share:.0f}%'}")
    print(f"wrote {results / f'batch_size_{spec}.json'} and .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

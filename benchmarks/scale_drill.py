"""A gated distillation on a large prepared (streamed) dataset with 2 Ray workers, run unbroken and
with a worker killed (SIGKILL) mid-epoch and resumed from the last DCP checkpoint: the two runs
must agree on steps, teacher-forward counters and test AUC.

Steps: train the experts on the prepared dataset (a bounded number of steps each, one worker),
then the two distillations side by side. Appends its entries to ``benchmarks/results/scale.json``
(kind ``distill_drill``).

Reproduce (after ``benchmarks/scale.py`` prepared runs/scale/10m/dataset):
``.venv/bin/python benchmarks/scale_drill.py --dataset runs/scale/10m/dataset``
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from scale import ONE_THREAD, PY, measured  # noqa: E402


def train_expert(config: str, dataset: str, out: Path, steps: int, batch: int, seed: int = 0) -> None:
    """An expert trained on the prepared dataset for ``steps`` steps (one worker), once."""
    if (out / "metrics.json").is_file():
        return
    seconds, _, _ = measured([PY, "-m", "recsys_committee", "train", "--config", config, "--data", dataset, "--out", str(out), "--overwrite", "train.epochs=1",
                              f"train.max_steps_per_epoch={steps}", f"train.batch_size={batch}", "train.progress=false", f"seed={seed}"], ONE_THREAD)
    print(f"{out.name}: test AUC {json.loads((out / 'metrics.json').read_text())['test']['auc']:.4f} ({seconds:.0f}s)", flush=True)


def unbroken_and_killed(dataset: str, out: Path, common: list[str], kill_at_step: int) -> tuple[dict[str, dict[str, Any]], bool]:
    """The shipped distillation on 2 Ray workers from a prepared dataset, unbroken and with rank 1
    SIGKILLed at ``kill_at_step`` (resumed from the last DCP checkpoint): both runs' metrics, and
    whether they agree on steps, teacher-forward counts and test AUC."""
    results: dict[str, dict[str, Any]] = {}
    for name, extra in (("unbroken", []), ("killed", ["dist.kill_rank=1", f"dist.kill_at_step={kill_at_step}", "dist.max_failures=1"])):
        cmd = [PY, "-m", "recsys_committee", "distill", "--config", "configs/rec/diverse_distill.yaml", "--data", dataset, "--overwrite",
               "--num-workers", "2", "--out", str(out / name), *common, *extra]
        seconds, _, _ = measured(cmd, ONE_THREAD)
        m = json.loads((out / name / "metrics.json").read_text())
        results[name] = m
        print(f"{name}: steps {m['steps']}, resumed from {m.get('resumed_from_step')}, forwards {m['teacher_forwards']}, test AUC {m['test']['auc']:.6f}, "
              f"peak RSS/worker {m['peak_rss_gib_per_rank']} ({seconds:.0f}s)", flush=True)
    a, b = results["unbroken"], results["killed"]
    same = a["steps"] == b["steps"] and a["teacher_forwards"] == b["teacher_forwards"] and abs(a["test"]["auc"] - b["test"]["auc"]) < 1e-9
    print(f"killed + resumed == unbroken: {same}")
    return results, same


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--out", default="runs/scale/drill")
    parser.add_argument("--results", default="benchmarks/results/scale.json")
    parser.add_argument("--teacher-steps", type=int, default=300)
    parser.add_argument("--steps", type=int, default=60, help="distillation steps per epoch per worker")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--kill-at-step", type=int, default=80)
    args = parser.parse_args(argv)
    out = Path(args.out)
    manifest = json.loads((Path(args.dataset) / "manifest.json").read_text())
    rows = sum(manifest["rows"].values())
    teachers = out / "teachers"
    # two DLRM experts (seeds 0 and 1): the gate needs a choice to route (expert_din_dcn attends
    # over history_long, which the scale spec does not derive)
    for name, seed in (("expert_dlrm", 0), ("expert_dlrm_b", 1)):
        train_expert("configs/rec/expert_dlrm.yaml", args.dataset, teachers / name, args.teacher_steps, args.batch_size, seed)
    common = [f"teacher_dir={teachers}", f"train.epochs={args.epochs}", f"train.max_steps_per_epoch={args.steps}", f"train.batch_size={args.batch_size}",
              "train.checkpoint_every=20", "train.patience=10", "train.progress=false", "committee.gate_config.warmup_steps=20",
              'teachers=[{name: dlrm, kind: rec_model, checkpoint: "{teacher_dir}/expert_dlrm/model.safetensors", tap: top}, '
              '{name: dlrm_b, kind: rec_model, checkpoint: "{teacher_dir}/expert_dlrm_b/model.safetensors", tap: top}]']
    results, same = unbroken_and_killed(args.dataset, out, common, args.kill_at_step)
    entries = []
    for name, m in results.items():
        seconds = sum(h["seconds"] for h in m["history"])
        entries.append({"kind": "distill_drill", "run": name, "rows": rows, "workers": 2, "samples_per_s": m["steps"] * args.batch_size * 2 / seconds,
                        "peak_rss_gib_per_worker": m["peak_rss_gib_per_rank"], "steps": m["steps"], "resumed_from_step": m.get("resumed_from_step"),
                        "teacher_forwards": m["teacher_forwards"], "test_auc": m["test"]["auc"], "same_as_unbroken": same})
    path = Path(args.results)
    runs = json.loads(path.read_text()) if path.is_file() else []
    runs = [r for r in runs if r.get("kind") != "distill_drill"] + entries
    path.write_text(json.dumps(runs, indent=2))
    print(f"wrote {path}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())

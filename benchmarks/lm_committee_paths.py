"""The LM committee on MovieLens-100K through both data paths: in memory (the data spec read and
featurised in one process, the LM's outputs cached by row) and prepared (``prepare``, the LM's
outputs computed per shard by Ray Data actors and streamed with the rows). The same LM (the
pretrained encoder: features, no head), the same two experts (runs/teachers), the shipped
DiverseDistill config, one process each, over seeds: the distilled test AUCs must agree within
seed noise. Writes ``benchmarks/results/lm_committee_paths.json``.

Steps, each skipped when its output exists: prepare ML-100K; the LM's outputs on each path (2 Ray
Data actors each); then the distillations (``--seeds``).

Reproduce (after ``make demo`` or benchmarks/train_models.py trained runs/teachers):
``.venv/bin/python benchmarks/lm_committee_paths.py --seeds 0 1 2``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from provenance import provenance  # noqa: E402
from scale import ONE_THREAD, PY, measured  # noqa: E402

SPEC = "configs/data/ml-100k.yaml"
EXPERTS = ('{name: dlrm, kind: rec_model, checkpoint: "{teacher_dir}/expert_dlrm/model.safetensors", tap: top}, '
           '{name: din_dcn, kind: rec_model, checkpoint: "{teacher_dir}/expert_din_dcn/model.safetensors", tap: mlp}')


def run(cmd: list[str]) -> None:
    seconds, _, _ = measured([PY, "-m", "recsys_committee", *cmd], ONE_THREAD)
    print(f"{cmd[0]}: {seconds:.0f}s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--teacher-dir", default="runs/teachers")
    parser.add_argument("--out", default="runs/lm_paths")
    parser.add_argument("--history-n", type=int, default=1, help="past titles in each LM text (short texts: a cheaper LM pass)")
    parser.add_argument("--results", default="benchmarks/results/lm_committee_paths.json")
    args = parser.parse_args(argv)
    out = Path(args.out)
    dataset, mem_cache, stream_cache = out / "dataset", out / "lm_in_memory", out / "lm_streamed"
    lm = [f"model.params.history_n={args.history_n}", "model.params.cache_taps=[encoder.layer.3]", "train.progress=false"]
    if not (dataset / "manifest.json").is_file():
        run(["prepare", "--data", SPEC, "--out", str(dataset), "--overwrite"])
    if not (mem_cache / "index.json").is_file() or not json.loads((mem_cache / "index.json").read_text()).get("complete", True):
        run(["cache", "--config", "configs/rec/lm_cache.yaml", "--data", SPEC, "--out", str(mem_cache), "--num-workers", "2", *lm])
    if not ((stream_cache / "cache.json").is_file() and json.loads((stream_cache / "cache.json").read_text()).get("complete")):
        run(["cache", "--config", "configs/rec/lm_cache.yaml", "--data", str(dataset), "--out", str(stream_cache), "--num-workers", "2", *lm])
    paths = {
        "in_memory": (SPEC, f'{{name: lm, kind: lm_cached, cache: "{mem_cache.resolve()}", tap: encoder.layer.3}}'),
        "prepared": (str(dataset), f'{{name: lm, kind: streamed_cache, cache: "{stream_cache.resolve()}"}}'),
    }
    runs: dict[str, list[dict]] = {p: [] for p in paths}
    for seed in args.seeds:
        for path, (data, lm_teacher) in paths.items():
            target = out / f"{path}-seed{seed}"
            if not (target / "metrics.json").is_file():
                run(["distill", "--config", "configs/rec/diverse_distill.yaml", "--data", data, "--out", str(target), "--overwrite",
                     f"teacher_dir={args.teacher_dir}", f"teachers=[{lm_teacher}, {EXPERTS}]", "data.transfer_per_row=0", f"seed={seed}",
                     "train.progress=false"])
            m = json.loads((target / "metrics.json").read_text())
            runs[path].append({"seed": seed, "test_auc": m["test"]["auc"], "val_auc": m["val"]["auc"], "best_epoch": m["best_epoch"],
                               "teacher_forwards": m["teacher_forwards"]["run"]})
            print(f"{path}, seed {seed}: test AUC {m['test']['auc']:.4f} (val {m['val']['auc']:.4f})", flush=True)
    summary = {}
    for path, rs in runs.items():
        aucs = [r["test_auc"] for r in rs]
        summary[path] = {"test_mean": statistics.mean(aucs), "test_std": statistics.stdev(aucs) if len(aucs) > 1 else 0.0, "runs": rs}
    a, b = summary["in_memory"], summary["prepared"]
    diff = b["test_mean"] - a["test_mean"]
    noise = max(a["test_std"], b["test_std"])
    result = {"paths": summary, "prepared_minus_in_memory": diff, "seed_std": noise, "within_seed_noise": abs(diff) <= 2 * noise,
              "lm": f"the pretrained encoder (no head), history_n={args.history_n}", "command": "python benchmarks/lm_committee_paths.py " + " ".join(argv or sys.argv[1:]),
              "provenance": provenance()}
    Path(args.results).write_text(json.dumps(result, indent=2))
    print(f"in memory {a['test_mean']:.4f} +- {a['test_std']:.4f}, prepared {b['test_mean']:.4f} +- {b['test_std']:.4f}: "
          f"difference {diff:+.4f} (within 2 seed stds: {result['within_seed_noise']})")
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

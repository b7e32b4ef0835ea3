"""The whole committee at scale: the LM teacher (its outputs computed over the prepared shards by
Ray Data actors and streamed with the rows) plus the DLRM and DIN+DCN experts, distilled with the
shipped gate by 2 Ray workers from a prepared synthetic text-bearing log, unbroken and with a
worker SIGKILLed mid-epoch and resumed: the two runs must agree on steps, teacher-forward counts
and test AUC.

Steps, each skipped when its output exists (so the LM cache, the long step, resumes across runs):
1. the synthetic generator's text-bearing log (titles, genres, tags, the users' liked factors)
   with a 50-item rated history for DIN+DCN, prepared out of core;
2. the LM's outputs over every shard: ``cache --config configs/rec/lm_cache.yaml --data DATASET
   --num-workers 2`` (the pretrained encoder, no head: features only; ``--history-n`` past titles
   keep the texts short);
3. the two experts trained on the prepared dataset (one worker, ``--teacher-steps`` steps);
4. the two distillations; entries ``lm_committee_drill`` of ``benchmarks/results/scale.json``.

Reproduce: ``.venv/bin/python benchmarks/lm_committee_drill.py --rows 201000 --out runs/lm_drill_201k``
(the generator drops repeated pairs: 201,000 asked for gives 200,801 rows)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from provenance import provenance  # noqa: E402
from scale import ONE_THREAD, PY, measured  # noqa: E402
from scale_drill import train_expert, unbroken_and_killed  # noqa: E402


def text_log(rows: int, root: Path) -> Path:
    """The synthetic text-bearing log and its spec, with history_long (DIN+DCN attends over it)."""
    from recsys_committee.data.logs.synthetic import SyntheticSpec, write_spec, write_synthetic

    spec = root / "ml-synth-text-long.yaml"
    if spec.is_file():
        return spec
    write_synthetic(root, SyntheticSpec(rows=rows, users=max(rows // 20, 50), items=max(rows // 40, 50), seed=0))
    body = yaml.safe_load(write_spec(root, text=True).read_text())
    body["features"]["derived"]["history_long"] = {"length": 50}
    spec.write_text(yaml.safe_dump(body, sort_keys=False))
    return spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--out", default="runs/lm_drill")
    parser.add_argument("--results", default="benchmarks/results/scale.json")
    parser.add_argument("--history-n", type=int, default=1, help="past titles in each LM text")
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--teacher-steps", type=int, default=150)
    parser.add_argument("--steps", type=int, default=40, help="distillation steps per epoch per worker")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--kill-at-step", type=int, default=60)
    parser.add_argument("--cache-only", action="store_true", help="stop after the LM cache (steps 1-2)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    spec = text_log(args.rows, Path("data") / f"lm_drill-{args.rows}")
    dataset = out / "dataset"
    if not (dataset / "manifest.json").is_file():
        subprocess.run([PY, "-m", "recsys_committee", "prepare", "--data", str(spec), "--out", str(dataset), "--overwrite", "--bucket-rows",
                        str(max(args.rows // 16, 1000))], check=True, cwd=ROOT)
    rows = sum(json.loads((dataset / "manifest.json").read_text())["rows"].values())
    lm_cache = out / "lm_cache"
    texts = ["model.params.include_ratings=false", "model.params.include_stats=false", f"model.params.history_n={args.history_n}"]
    index = lm_cache / "cache.json"
    if not (index.is_file() and json.loads(index.read_text()).get("complete")):  # an interrupted build resumes: finished shards are kept
        seconds, _, log = measured([PY, "-m", "recsys_committee", "cache", "--config", "configs/rec/lm_cache.yaml", "--data", str(dataset), "--out", str(lm_cache),
                                    "--num-workers", str(args.actors), "train.progress=false", *texts], ONE_THREAD)
        print(f"LM outputs over {rows:,} rows, {args.actors} actors: {seconds:.0f}s", flush=True)
    if args.cache_only:
        return 0
    teachers = out / "teachers"
    train_expert("configs/rec/expert_dlrm.yaml", str(dataset), teachers / "expert_dlrm", args.teacher_steps, args.batch_size)
    train_expert("configs/rec/expert_din_dcn.yaml", str(dataset), teachers / "expert_din_dcn", args.teacher_steps, args.batch_size)
    committee = ('teachers=[{name: lm, kind: streamed_cache, cache: "' + str(lm_cache.resolve()) + '"}, '
                 '{name: dlrm, kind: rec_model, checkpoint: "{teacher_dir}/expert_dlrm/model.safetensors", tap: top}, '
                 '{name: din_dcn, kind: rec_model, checkpoint: "{teacher_dir}/expert_din_dcn/model.safetensors", tap: mlp}]')
    common = [f"teacher_dir={teachers}", f"train.epochs={args.epochs}", f"train.max_steps_per_epoch={args.steps}", f"train.batch_size={args.batch_size}",
              "train.checkpoint_every=20", "train.patience=10", "train.progress=false", "committee.gate_config.warmup_steps=20", committee]
    results, same = unbroken_and_killed(str(dataset), out, common, args.kill_at_step)
    entries = [{"kind": "lm_committee_drill", "run": name, "rows": rows, "workers": 2, "steps": m["steps"], "resumed_from_step": m.get("resumed_from_step"),
                "teacher_forwards": m["teacher_forwards"], "test_auc": m["test"]["auc"], "peak_rss_gib_per_worker": m["peak_rss_gib_per_rank"],
                "same_as_unbroken": same, "teachers": sorted(m["teacher_params"])} for name, m in results.items()]
    path = Path(args.results)
    runs = json.loads(path.read_text()) if path.is_file() else []
    measured_at = provenance()
    path.write_text(json.dumps([r for r in runs if r.get("kind") != "lm_committee_drill"] + [{**e, "provenance": measured_at} for e in entries], indent=2))
    print(f"peak RSS per worker: {max(max(e['peak_rss_gib_per_worker']) for e in entries):.2f} GiB (target <= 3 GiB)")
    print(f"wrote {path}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())

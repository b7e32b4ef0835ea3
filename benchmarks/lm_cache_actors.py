"""The LM teacher's outputs over a prepared dataset's shards: the bare encoder forward (one
process, one thread, texts tokenised beforehand) against ``recsys-committee cache --config
configs/rec/lm_cache.yaml --data DATASET --num-workers N`` with 1 and 2 Ray Data actors (one
thread each; each renders its row groups' texts from the shards, tokenises them, runs the encoder
and writes one output shard per input shard), on the same rows, in one run.

Rates after start-up are the actors' own clock: rows over the time from the first shard begun
to the last one finished (Ray, the actors and the LM loading are ``startup_s``, reported apart).
Peak RSS per actor is each actor process's high-water mark; the 1-actor run is repeated on a
dataset twice as large (``--rows`` x 2) to show it does not grow with the rows.

The data: the synthetic generator's text-bearing log (titles, genres, tags, the user's liked
factors: short texts), prepared once into ``--out``. Entries ``{"kind": "lm_cache", "actors": 0 |
1 | 2, ...}`` of ``benchmarks/results/scale.json`` replace the earlier ``lm_cache`` ones.

Reproduce: ``.venv/bin/python benchmarks/lm_cache_actors.py --rows 4096``  (about 5 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from provenance import provenance  # noqa: E402
from scale import ONE_THREAD, PY, measured  # noqa: E402

CONFIG = "configs/rec/lm_cache.yaml"
# the synthetic log's texts are templates: the MovieLens-only options off (docs/DATA_SPEC.md)
TEMPLATE_TEXTS = ["model.params.include_ratings=false", "model.params.include_stats=false"]


def text_dataset(rows: int, out: Path) -> Path:
    """The synthetic text-bearing log of ``rows`` rows, prepared (8 buckets: shards for 2 actors)."""
    from recsys_committee.data.logs.synthetic import SyntheticSpec, write_spec, write_synthetic

    dataset = out / f"dataset-{rows}"
    if (dataset / "manifest.json").is_file():
        return dataset
    source = out / f"log-{rows}"
    write_synthetic(source, SyntheticSpec(rows=rows, users=max(rows // 20, 50), items=max(rows // 40, 50), seed=0))
    spec = write_spec(source, text=True)
    subprocess.run([PY, "-m", "recsys_committee", "prepare", "--data", str(spec), "--out", str(dataset), "--bucket-rows", str(max(rows // 8, 64)),
                    "--row-group-rows", "256"], check=True, cwd=ROOT, capture_output=True)
    return dataset


def bare_forward(dataset: Path) -> dict:
    """The encoder alone on every row of the dataset, one thread, the texts rendered and tokenised
    before the clock starts: what the actors' rate is measured against."""
    import pyarrow.parquet as pq
    import torch

    from recsys_committee.data.prepared.texts import PreparedTexts
    from recsys_committee.lm_cache_command import default_tap, lm_model
    from recsys_committee.models.lm.cache import LMCacheCompute
    from recsys_committee.models.lm.encoder import load_tokenizer, tokenize
    from recsys_committee.train.config import load_config

    torch.set_num_threads(1)
    manifest = json.loads((dataset / "manifest.json").read_text())
    model, params, with_logits = lm_model(load_config(ROOT / CONFIG, TEMPLATE_TEXTS))
    texts = PreparedTexts(dataset, manifest, model.text_options)
    rendered = []
    for split in ("train", "val", "test"):
        for shard in manifest["shards"][split]:
            rendered += texts.render(pq.read_table(dataset / shard["file"], columns=texts.columns))
    model.set_tokens(*tokenize(load_tokenizer(params.get("model_dir")), rendered, model.max_length))
    compute, batch = LMCacheCompute(model, [default_tap(params)], with_logits=with_logits), params["cache_batch_size"]
    compute(torch.arange(batch))  # warm-up
    start = time.perf_counter()
    for b in range(0, len(rendered), batch):
        compute(torch.arange(b, min(b + batch, len(rendered))))
    seconds = time.perf_counter() - start
    return {"kind": "lm_cache", "actors": 0, "workers": 0, "rows": len(rendered), "samples_per_s": len(rendered) / seconds, "startup_s": None,
            "peak_rss_gib_per_worker": [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20]}


def actors_run(dataset: Path, out: Path, actors: int) -> dict:
    """``cache --data DATASET --num-workers actors`` from scratch, timed by its own index."""
    shutil.rmtree(out, ignore_errors=True)
    began = time.time()
    seconds, driver_peak, _ = measured([PY, "-m", "recsys_committee", "cache", "--config", CONFIG, "--data", str(dataset), "--out", str(out),
                                        "--num-workers", str(actors), "train.progress=false", *TEMPLATE_TEXTS], ONE_THREAD)
    index = json.loads((out / "cache.json").read_text())
    return {"kind": "lm_cache", "actors": actors, "workers": actors, "rows": index["rows"], "samples_per_s": index["examples_per_s_working"],
            "startup_s": index["first_shard_started"] - began, "seconds_with_startup": seconds,
            "peak_rss_gib_per_worker": index["peak_rss_gib_per_actor"], "driver_peak_rss_gib": driver_peak}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--out", default="runs/lm_cache_actors")
    parser.add_argument("--results", default="benchmarks/results/scale.json")
    args = parser.parse_args(argv)
    out = Path(args.out)
    small, large = text_dataset(args.rows, out), text_dataset(2 * args.rows, out)
    entries = [bare_forward(small)]
    print(f"bare encoder forward: {entries[0]['samples_per_s']:.1f} rows/s (1 thread, {entries[0]['rows']} rows)", flush=True)
    for actors, dataset in ((1, small), (2, small), (1, large)):
        entry = actors_run(dataset, out / f"cache-{actors}-{dataset.name}", actors)
        entries.append(entry)
        print(f"{actors} actor(s), {entry['rows']} rows: {entry['samples_per_s']:.1f} rows/s after start-up ({entry['startup_s']:.1f} s start-up), "
              f"peak RSS per actor {', '.join(f'{g:.2f}' for g in entry['peak_rss_gib_per_worker'])} GiB", flush=True)
    bare, one, two, one_large = entries
    print(f"2 actors / 1 actor = {two['samples_per_s'] / one['samples_per_s']:.2f}x (target >= 1.7); "
          f"1 actor / bare forward = {one['samples_per_s'] / bare['samples_per_s']:.2f}x (target >= 0.9); "
          f"peak RSS per actor at {one_large['rows']} / {one['rows']} rows = "
          f"{max(one_large['peak_rss_gib_per_worker']) / max(one['peak_rss_gib_per_worker']):.2f}x (target <= 1.1)")
    path = Path(args.results)
    runs = json.loads(path.read_text()) if path.is_file() else []
    measured_at = provenance()
    path.write_text(json.dumps([r for r in runs if r.get("kind") != "lm_cache"] + [{**e, "provenance": measured_at} for e in entries], indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

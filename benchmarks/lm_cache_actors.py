"""LM teacher cache build rate: the bare encoder forward (one process, one thread) against
``recsys-committee cache --num-workers 1`` (built in the command's process) and
``--num-workers 2`` (two Ray Data actors, one thread each; the rate includes each actor loading
the data and the LM), on the same rows, in one run. Appends ``lm_cache`` entries to
``benchmarks/results/scale.json``.

Reproduce: ``.venv/bin/python benchmarks/lm_cache_actors.py --rows 2048``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from scale import ONE_THREAD, PY, measured  # noqa: E402


def bare_forward(rows: int, shard_rows: int) -> float:
    import torch

    from recsys_committee.train.config import load_config
    from recsys_committee.lm_cache_command import lm_cache_parts

    torch.set_num_threads(1)
    cfg = load_config(ROOT / "configs/rec/lm_cache.yaml", [f"data.max_rows={rows}"])
    _, compute, _, params = lm_cache_parts(cfg)
    batch = params["cache_batch_size"]
    compute(torch.arange(batch))  # warm-up
    start = time.perf_counter()
    for b in range(0, rows, batch):
        compute(torch.arange(b, min(b + batch, rows)))
    return rows / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--shard-rows", type=int, default=256)
    parser.add_argument("--out", default="runs/lm_cache_actors")
    parser.add_argument("--results", default="benchmarks/results/scale.json")
    args = parser.parse_args(argv)
    entries = []
    bare = bare_forward(args.rows, args.shard_rows)
    print(f"bare encoder forward: {bare:.1f} ex/s (1 thread)", flush=True)
    entries.append({"kind": "lm_cache", "run": "bare_forward", "rows": args.rows, "workers": 1, "samples_per_s": bare, "peak_rss_gib_per_worker": None})
    for workers in (1, 2):
        out = Path(args.out) / f"w{workers}"
        seconds, peak, log = measured([PY, "-m", "recsys_committee", "cache", "--config", "configs/rec/lm_cache.yaml", "--out", str(out), "--rebuild-cache",
                                       "--num-workers", str(workers), f"data.max_rows={args.rows}", f"model.params.cache_shard_rows={args.shard_rows}",
                                       "train.progress=false"], ONE_THREAD)
        index = json.loads((out / "index.json").read_text())
        rate = index["rows_per_second"]
        print(f"cache, {'in process' if workers == 1 else f'{workers} Ray Data actors'}: {rate:.1f} ex/s over {index['n_rows']} rows ({seconds:.0f}s with start-up)", flush=True)
        entries.append({"kind": "lm_cache", "run": "in_process" if workers == 1 else f"ray_data_actors_{workers}", "rows": index["n_rows"], "workers": workers, "samples_per_s": rate,
                        "peak_rss_gib_per_worker": None, "driver_peak_rss_gib": peak, "seconds_with_startup": seconds})
    one, two = entries[1]["samples_per_s"], entries[2]["samples_per_s"]
    print(f"2 actors / in process = {two / one:.2f}x; in process / bare forward = {one / bare:.2f}x")
    path = Path(args.results)
    runs = json.loads(path.read_text()) if path.is_file() else []
    path.write_text(json.dumps([r for r in runs if r.get("kind") != "lm_cache"] + entries, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Distillation step time with the LM teacher read from its cache vs run live, side by side.

Reproduce:  .venv/bin/python benchmarks/lm_cache_vs_live.py --rows 3000 --steps 20
On a real-data slice (the first --rows rows in time) it builds the slice's LM cache, then times
the SAME committee step (student + QA + gate + losses + backward) with teacher kind
`lm_cached` and with `lm_minilm` (the encoder runs on every routed sub-batch). Also reports
the cache load time and its size on disk. Whole-set epoch times follow by scaling per-row cost.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from recsys_committee.committee import Committee, CommitteeConfig
from recsys_committee.models import build_model
from recsys_committee.train.config import load_config
from recsys_committee.lm_cache_command import run_cache
from recsys_committee.train.runner import TeacherContext, build_teachers
from recsys_committee.rec_domain import load_data


def time_steps(committee: Committee, data, steps: int, batch_size: int) -> float:
    optimizer = torch.optim.AdamW([p for p in committee.parameters() if p.requires_grad], lr=1e-3)
    batches = data.train.batches(batch_size, shuffle=True, generator=torch.Generator().manual_seed(0))
    first = next(batches)
    committee(first, 10_000).loss.backward()  # warm-up step, not timed
    start = time.perf_counter()
    for step, batch in zip(range(steps), batches):
        out = committee(batch, 10_000 + step)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = Path(tmp) / "cache"
        overrides = [f"data.max_rows={args.rows}", f"model.params.feature_cache={cache_dir}", "train.progress=false"]
        cfg = load_config("configs/rec/lm_cache.yaml", overrides)
        start = time.perf_counter()
        run_cache(cfg, cache_dir)
        build_seconds = time.perf_counter() - start
        size = sum(f.stat().st_size for f in cache_dir.rglob("*") if f.is_file())
        data = load_data(cfg.data)
        # The pretrained encoder has no task head, so KD has nothing to read: time the QA path
        # (question -> attend over the LM features -> answer), identical for both teacher kinds.
        ccfg = CommitteeConfig(method="diverse_distill", gate="dense", losses=["task", "answer", "align"])
        student_cfg = load_config("configs/rec/student.yaml")
        timings = {}
        for kind, spec in (
            ("cached", {"name": "lm", "kind": "lm_cached", "cache": str(cache_dir), "tap": "encoder.layer.3"}),
            ("live", {"name": "lm", "kind": "lm_minilm", "tap": "encoder.layer.3", "pool_tokens": True}),
        ):
            start = time.perf_counter()
            teachers = build_teachers([spec], context=TeacherContext(data))
            load_seconds = time.perf_counter() - start
            student = build_model("student", data.cardinalities, data.num_dense, data=data, **student_cfg.model.params)
            committee = Committee.build(student, teachers, data.train.batch(torch.arange(64)), ccfg)
            timings[kind] = (time_steps(committee, data, args.steps, args.batch_size), load_seconds)
    cached, live = timings["cached"][0], timings["live"][0]
    rows_train = 80_000
    print(f"LM teacher cache for {args.rows} rows: built in {build_seconds:.1f}s ({args.rows / build_seconds:.1f} rows/s), {size / 1e6:.2f} MB on disk ({size / args.rows:.0f} B/row -> {size / args.rows * 100_000 / 1e6:.0f} MB for ML-100K)")
    print(f"teacher load: cached {timings['cached'][1]:.2f}s, live {timings['live'][1]:.2f}s")
    print(f"distill step (batch {args.batch_size}, {args.steps} steps): cached {cached * 1000:.1f} ms, live {live * 1000:.1f} ms -> live / cached = {live / cached:.1f}x")
    print(f"scaled to one ML-100K epoch ({rows_train} train rows): cached {cached * rows_train / args.batch_size:.0f}s, live {live * rows_train / args.batch_size:.0f}s")
    print(f"(reproduce: .venv/bin/python benchmarks/lm_cache_vs_live.py --rows {args.rows} --steps {args.steps} --batch-size {args.batch_size})")


if __name__ == "__main__":
    main()

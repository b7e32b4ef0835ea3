"""The LM teacher's cache as distributed batch inference: Ray Data ``map_batches`` over the
missing shards with a pool of actors, each holding one copy of the LM (one CPU each, one GPU
each when Ray sees enough GPUs).

Why actors and shards: the LM forward is the whole cost of the cache (the rest is bookkeeping),
so it is what scales out; an actor loads the model once and computes whole shards, and the
driver stores and indexes each shard as it arrives (``data/teacher_cache.build_cache``), so the
cache stays keyed, checksummed and resumable exactly as when built in one process.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Iterator

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save


class LMShardActor:
    """Builds the LM and its cache compute from the run config once; computes whole shards."""

    def __init__(self, run: dict[str, Any], cwd: str, batch_size: int):
        from recsys_committee.train.config import RunConfig, from_dict
        from recsys_committee.train.run_cache import lm_cache_parts

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        if os.path.isdir(cwd):
            os.chdir(cwd)  # relative data / weight paths mean the driver's
        _, self.compute, _, _ = lm_cache_parts(from_dict(RunConfig, run))
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from recsys_committee.data.teacher_cache import compute_shard

        payloads = [st_save(compute_shard(self.compute, int(a), int(b), self.batch_size)) for a, b in zip(batch["start"], batch["stop"])]
        return {"i": np.asarray(batch["i"]), "payload": np.array(payloads, dtype=object)}


def ray_shard_runner(cfg: Any, workers: int, batch_size: int) -> Callable[[list[tuple[int, int, int]]], Iterator[tuple[int, dict[str, torch.Tensor]]]]:
    def run(ranges: list[tuple[int, int, int]]) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
        import ray
        from ray.data import ActorPoolStrategy

        from recsys_committee.train.ray_entry import ensure_ray

        if not ranges:
            return
        ensure_ray()
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= workers else 0
        items = [{"i": i, "start": a, "stop": b} for i, a, b in ranges]
        out = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            LMShardActor, fn_constructor_kwargs={"run": dataclasses.asdict(cfg), "cwd": os.getcwd(), "batch_size": batch_size},
            batch_size=1, num_cpus=1, num_gpus=gpus, compute=ActorPoolStrategy(min_size=workers, max_size=workers))
        for row in out.iter_rows():
            yield int(row["i"]), st_load(bytes(row["payload"]))

    return run

"""``recsys-committee cache``: compute the LM teacher's tapped features (and logits) once.

The config is the LM teacher's own run config (``configs/rec/lm_cache.yaml`` bases on
``lm_teacher.yaml``): the data, and ``model.params`` (text options, ``cache_taps``,
``cache_dtype``, ``cache_shard_rows``, ``cache_batch_size``, optional ``init_checkpoint``).
So ``train`` with ``feature_cache`` and this command build and accept the same cache. It is
written to ``--out`` (``train/teacher_cache.py``: safetensors shards + index.json; resumable,
keyed, checksummed). Without ``init_checkpoint`` the cached encoder is the pretrained one and
there are no logits (the CPU recipe: cache -> train the head on it -> an ``lm_cached`` teacher
with that checkpoint computes its logits from the cached pooled output); with one, that
model's encoder is cached with its logits. A ``finetune: top_k`` config with ``token_cache``
computes its outputs through that token cache (only the trained top layers run; the key says so).

With ``--num-workers N`` the shards are computed by distributed batch inference: Ray Data
``map_batches`` over the missing shards with a pool of N actors, each holding one copy of the LM
(one CPU each, one GPU each when Ray sees enough GPUs). Why actors and shards: the LM forward is
the whole cost of the cache, so it is what scales out; an actor loads the model once and computes
whole shards, and the driver stores and indexes each shard as it arrives, so the cache stays
keyed, checksummed and resumable exactly as when built in one process.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from recsys_committee.errors import ConfigError
from recsys_committee.train.config import RunConfig

TEXT_PARAMS = ("model_dir", "max_length", "history_n", "include_ratings", "include_stats", "id_tokens", "head_hidden", "dropout",
               "finetune", "top_k", "autocast")
DEFAULTS = {"cache_taps": ["encoder.layer.3", "pooled"], "cache_dtype": "float16", "cache_shard_rows": 4096, "cache_batch_size": 64}


def lm_model(cfg: RunConfig, data: Any = None) -> tuple[Any, dict[str, Any], bool]:
    """(model, params, with_logits) of the LM a config names: the encoder (with the texts of
    ``data`` rendered and tokenised when given) and, with ``init_checkpoint``, that model's weights
    (then the cache holds its logits too)."""
    from recsys_committee.models.lm.checkpoint import load_lm_weights
    from recsys_committee.models.lm.model import build_lm_model

    if cfg.model.name != "lm_teacher":
        raise ConfigError(f"model.name: the cache command caches the LM teacher ('lm_teacher'), got '{cfg.model.name}'")
    params = {**DEFAULTS, **cfg.model.params}
    model = build_lm_model(data, getattr(data, "raw", None), texts=data is not None, **{k: params[k] for k in TEXT_PARAMS if k in params})
    checkpoint = params.get("init_checkpoint")
    if checkpoint:
        load_lm_weights(model, checkpoint.replace("{teacher_dir}", cfg.teacher_dir))
    return model, params, bool(checkpoint)


def lm_cache_parts(cfg: RunConfig) -> tuple[Any, Any, dict[str, Any], dict[str, Any]]:
    """(model, compute, key, params) of the LM cache a config asks for: built the same way by
    the command and by every batch-inference actor."""
    from recsys_committee.models.lm.cache import LMCacheCompute, lm_cache_key
    from recsys_committee.rec_domain import load_data

    data = load_data(cfg.data)
    model, params, with_logits = lm_model(cfg, data)
    taps = list(params["cache_taps"] or [])
    if not taps:
        raise ConfigError("model.params.cache_taps must name at least one output (encoder.layer.i or pooled)")
    if params.get("token_cache") and params.get("finetune") == "top_k":
        # a top_k teacher: the frozen lower layers come from its token cache, only the top ones run
        from recsys_committee.models.lm.cache import attach_token_cache

        attach_token_cache(model, data.table, params["token_cache"], dtype=params["cache_dtype"],
                           shard_rows=params["cache_shard_rows"], batch_size=params["cache_batch_size"], progress=cfg.train.progress)
    key = lm_cache_key(model, data.table, taps, params["cache_dtype"], with_logits=with_logits)
    return model, LMCacheCompute(model, taps, with_logits=with_logits), key, params


def default_tap(params: dict[str, Any]) -> str:
    """The tap a streamed LM cache stores: the config's first ``cache_taps`` entry (the committee's
    LM reads ``encoder.layer.3``), else the pooled output."""
    from recsys_committee.models.lm.cache import POOLED

    taps = [t for t in (params.get("cache_taps") or []) if not t.endswith(":tokens")]
    return taps[0] if taps else POOLED


def run_streamed_cache(cfg: RunConfig, dataset: Path, out: Path, workers: int = 1, tap: str | None = None) -> dict[str, Any]:
    """The LM's outputs over every shard of a prepared dataset (``cache --config LM --data
    DATASET_DIR``): ``workers`` Ray Data actors, one output shard per input shard, resumable and
    checksummed like an expert's (``data/prepared/teacher_outputs.py``), read by a streamed
    distillation through a ``streamed_cache`` teacher."""
    from recsys_committee.data.prepared.stream import open_prepared
    from recsys_committee.data.prepared.teacher_outputs import build_shard_outputs
    from recsys_committee.data.prepared.texts import PreparedTexts

    data = open_prepared(dataset)
    model, params, with_logits = lm_model(cfg)
    PreparedTexts(data.root, data.manifest, model.text_options)  # no texts kept, or options they cannot serve: one line here
    tap = tap or default_tap(params)
    key = {"dataset": data.manifest["content_hash"], "text": data.manifest["text"], "teacher": "lm_minilm", "weights": model.encoder_digest(),
           "head": model.head_digest() if with_logits else None, "tap": tap,
           "text_options": {**model.text_options.as_dict(), "max_length": model.max_length}}
    index = build_shard_outputs(dataset, out, key, "recsys_committee.models.lm.prepared:lm_outputs",
                                {"run": dataclasses.asdict(cfg), "tap": tap, "batch_size": params["cache_batch_size"]},
                                actors=workers, dtype=params["cache_dtype"], teacher_params=sum(p.numel() for p in model.parameters()),
                                logits=with_logits, transfer=False)
    return {"cache": str(out), "rows": index["rows"], "tap": tap, "logits": with_logits, "actors": workers,
            "seconds": round(index["seconds"], 1), "examples_per_s": index["examples_per_s"]}


def run_cache(cfg: RunConfig, out: Path, rebuild: bool = False, workers: int = 1) -> dict[str, Any]:
    """Build (or resume) the LM teacher's cache; ``workers > 1``: the shards are computed by that
    many Ray Data actors (``LMShardActor`` below), stored here as each finishes."""
    from recsys_committee.train.teacher_cache import build_cache

    model, compute, key, params = lm_cache_parts(cfg)
    runner = None
    if workers > 1:
        runner = ray_shard_runner(cfg, workers, params["cache_batch_size"])
    cache = build_cache(
        out, key, model.num_rows, compute,
        shard_rows=params["cache_shard_rows"], batch_size=params["cache_batch_size"], rebuild=rebuild,
        progress=cfg.train.progress, description="LM teacher cache",
        meta={"teacher_params": sum(p.numel() for p in model.lm.parameters())}, shard_runner=runner,
    )
    return {
        "cache": str(out),
        "rows": cache.n_rows,
        "shards": len(cache.index["shards"]),
        "outputs": {k: v["shape"] for k, v in cache.outputs.items()},
        "dtype": cache.index["dtype"],
        "max_abs_error": cache.max_abs_error,
        "seconds": round(float(cache.index.get("seconds", 0.0)), 1),
        "rows_per_second": cache.index.get("rows_per_second"),
        "workers": workers,
        "key_hash": cache.index["key_hash"][:16],
    }


class LMShardActor:
    """Builds the LM and its cache compute from the run config once; computes whole shards."""

    def __init__(self, run: dict[str, Any], cwd: str, batch_size: int):
        from recsys_committee.train.config import RunConfig, from_dict
        
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        if os.path.isdir(cwd):
            os.chdir(cwd)  # relative data / weight paths mean the driver's
        _, self.compute, _, _ = lm_cache_parts(from_dict(RunConfig, run))
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from recsys_committee.train.teacher_cache import compute_shard

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

"""A frozen teacher's outputs over a prepared dataset, computed once by distributed batch inference
(Ray Data, an actor pool) and streamed with the rows.

Why aligned files and not an id-indexed table: the streamed reader never holds a split in memory,
so a cache that must be indexed by ``example_id`` would have to be (all of it). Instead each
input shard gets one output shard with the SAME name and row groups; the reader reads a row
group of the cache next to the row group of the data, and the outputs ride along in the batch
(``RecBatch.extras``) through shuffling, rank splitting and the gate's routing. Resumable: one
file per input shard, written to a temporary name and renamed, and a rerun skips every shard
already there; the index keys the cache (dataset content hash, teacher file sha256, tap) and
checksums every shard.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from recsys_committee.committee.teacher import TeacherAdapter, TeacherContext, TeacherOutput, register_teacher
from recsys_committee.files import atomic_path, file_sha256, write_json
from recsys_committee.data.logs.schema import DataValidationError

INDEX = "cache.json"
FORMAT = "streamed-teacher-cache/1"
SPLITS = ("train", "val", "test")


def _peak_rss_gib() -> float:
    """This process's peak resident memory so far (the kernel's high-water mark, VmHWM)."""
    try:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM:"))
        return int(line.split()[1]) / 2**20
    except (OSError, StopIteration, ValueError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def cache_key(dataset: Path, checkpoint: Path, tap: str) -> dict[str, Any]:
    manifest = json.loads((dataset / "manifest.json").read_text())
    return {"dataset": manifest["content_hash"], "teacher": file_sha256(checkpoint), "tap": tap}


def rec_model_outputs(data: Any, checkpoint: str, tap: str, batch_size: int) -> Callable[[Any, Any], tuple[np.ndarray, np.ndarray]]:
    """A trained model's (features at ``tap``, logits) of one row group of a prepared split."""
    from recsys_committee.models.trained import RecModelTeacher, load_trained_model

    teacher = RecModelTeacher(load_trained_model(checkpoint, data, who="teacher file").eval(), name="cache", tap=tap)

    def outputs(split: Any, unit: Any) -> tuple[np.ndarray, np.ndarray]:
        batch = split.to_batch(split._read([unit], with_caches=False))
        parts = [teacher.run(batch.subset(torch.arange(i, min(i + batch_size, len(batch))))) for i in range(0, len(batch), batch_size)]
        return torch.cat([p.features for p in parts]).float().numpy(), torch.cat([p.logits for p in parts]).float().numpy()

    return outputs


class ShardInference:
    """A Ray Data actor: builds the teacher once (``outputs``: "module:function" called with the
    opened dataset and ``options``, returning a row group's (features, logits)), then turns each
    input shard it is handed into an output shard (one row group per input row group). Named,
    not passed: the actor imports the builder, so this module knows no teacher kind."""

    def __init__(self, dataset: str, out: str, outputs: str, options: dict[str, Any], dtype: str, threads: int = 1):
        torch.set_num_threads(threads)
        from recsys_committee.data.prepared.stream import open_prepared

        self.data = open_prepared(dataset)
        module, _, name = outputs.partition(":")
        self.outputs = getattr(importlib.import_module(module), name)(self.data, **options)
        self.out, self.dtype = Path(out), np.float16 if dtype == "float16" else np.float32

    @torch.no_grad()
    def shard(self, split: str, file: str) -> dict[str, Any]:
        target = self.out / file
        if target.is_file():
            return {"file": file, "rows": pq.ParquetFile(target).metadata.num_rows, "seconds": 0.0, "sha256": file_sha256(target), "skipped": True,
                    "started": float("nan"), "finished": float("nan"),  # (no None: every block keeps one column type)
                    "actor": os.getpid(), "peak_rss_gib": _peak_rss_gib()}
        source = self.data.dataset(split)
        units = [u for u in source.units if u.file == file]
        started, start = time.time(), time.perf_counter()
        rows = 0
        with atomic_path(target) as tmp:
            writer = None
            for unit in units:
                feats, logits = self.outputs(source, unit)
                feats = feats.astype(self.dtype)
                table = pa.table({"features": pa.FixedSizeListArray.from_arrays(pa.array(feats.reshape(-1)), feats.shape[1]),
                                  "logits": pa.array(logits.astype(np.float32))})
                writer = writer or pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table, row_group_size=unit.rows)
                rows += unit.rows
            if writer is not None:
                writer.close()
        return {"file": file, "rows": rows, "seconds": time.perf_counter() - start, "sha256": file_sha256(target), "skipped": False,
                "started": started, "finished": time.time(), "actor": os.getpid(), "peak_rss_gib": _peak_rss_gib()}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        records = [self.shard(str(s), str(f)) for s, f in zip(batch["split"], batch["file"])]
        return {k: [r[k] for r in records] for k in records[0]}


def build_streamed_cache(dataset: str | Path, out: str | Path, checkpoint: str | Path, tap: str, actors: int = 1, batch_size: int = 4096,
                         dtype: str = "float16") -> dict[str, Any]:
    """A trained model's outputs over every shard of every split (``cache --teacher``)."""
    dataset, checkpoint = Path(dataset).resolve(), Path(checkpoint).resolve()
    from recsys_committee.data.prepared.stream import open_prepared
    from recsys_committee.models.trained import load_trained_model

    teacher = load_trained_model(checkpoint, open_prepared(dataset), who="teacher file")  # a teacher of other data: one line here, not in every actor
    return build_shard_outputs(dataset, out, cache_key(dataset, checkpoint, tap), f"{__name__}:rec_model_outputs",
                               {"checkpoint": str(checkpoint), "tap": tap, "batch_size": batch_size}, actors=actors, dtype=dtype,
                               teacher_params=sum(p.numel() for p in teacher.parameters()))


def build_shard_outputs(dataset: str | Path, out: str | Path, key: dict[str, Any], outputs: str, options: dict[str, Any], actors: int = 1,
                        dtype: str = "float16", teacher_params: Optional[int] = None, threads: int = 1, logits: bool = True,
                        transfer: bool = True) -> dict[str, Any]:
    """Every shard of every split through ``outputs`` (see ``ShardInference``) on ``actors`` Ray
    actors (``threads`` CPUs each, one GPU each when Ray sees GPUs); returns (and writes) the index.
    ``logits``: False for a teacher without a head (its logits column is NaN; a committee gets none).
    ``transfer``: the transfer shards too, when the dataset has them (a model teacher's outputs on
    them are computed once; the LM's are not: its texts are those of logged rows)."""
    import ray
    from ray.data import ActorPoolStrategy

    from recsys_committee.train.ray_entry import ensure_ray

    dataset, out = Path(dataset).resolve(), Path(out).resolve()
    index_path = out / INDEX
    if index_path.is_file() and json.loads(index_path.read_text())["key"] != key:
        raise DataValidationError(f"{out}: a cache of another dataset / teacher / tap; choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    write_json(index_path, {"format": FORMAT, "key": key, "complete": False})
    manifest = json.loads((dataset / "manifest.json").read_text())
    splits = [*SPLITS, *(["transfer"] if transfer and "transfer" in manifest["shards"] else [])]
    items = [{"split": s, "file": sh["file"]} for s in splits for sh in manifest["shards"][s]]
    ensure_ray()
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= actors else 0
    start = time.perf_counter()
    records = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        ShardInference, fn_constructor_kwargs={"dataset": str(dataset), "out": str(out), "outputs": outputs, "options": options, "dtype": dtype,
                                              "threads": threads},
        # one shard in flight per actor: shards differ in size (a bucket per user range), and a shard
        # queued behind a large one on a busy actor would wait while another actor idles
        batch_size=1, num_cpus=threads, num_gpus=gpus,
        compute=ActorPoolStrategy(min_size=actors, max_size=actors, max_tasks_in_flight_per_actor=1)).take_all()
    seconds = time.perf_counter() - start
    computed = [r for r in records if not r["skipped"]]
    # the actors' own clock: from the first shard begun to the last one finished (start-up left out)
    working = max(r["finished"] for r in computed) - min(r["started"] for r in computed) if computed else None
    peaks: dict[int, float] = {}
    for r in records:
        peaks[int(r["actor"])] = max(peaks.get(int(r["actor"]), 0.0), float(r["peak_rss_gib"]))
    index = {"format": FORMAT, "key": key, "complete": True, "actors": actors, "dtype": dtype, "teacher_params": teacher_params, "logits": logits,
             "shards": {r["file"]: {"rows": int(r["rows"]), "sha256": r["sha256"]} for r in records},
             "rows": int(sum(r["rows"] for r in records)), "seconds": seconds,
             "examples_per_s": sum(r["rows"] for r in computed) / seconds if computed else None,
             "examples_per_s_working": sum(r["rows"] for r in computed) / working if working else None,
             "first_shard_started": min(r["started"] for r in computed) if computed else None,
             "peak_rss_gib_per_actor": sorted(peaks.values())}
    write_json(index_path, index)
    return index


def open_streamed_cache(root: str | Path, dataset_manifest: dict[str, Any], verify: bool = False) -> dict[str, Any]:
    root = Path(root)
    path = root / INDEX
    if not path.is_file():
        raise DataValidationError(f"{root}: no {INDEX} (not a streamed teacher cache)")
    index = json.loads(path.read_text())
    if not index.get("complete"):
        raise DataValidationError(f"{root}: the cache build did not finish; rerun it to resume")
    if index["key"]["dataset"] != dataset_manifest["content_hash"]:
        raise DataValidationError(f"{root}: built for another prepared dataset (content hash {index['key']['dataset'][:12]}, "
                                  f"this one {dataset_manifest['content_hash'][:12]})")
    for file, info in index["shards"].items():
        if not (root / file).is_file() or (verify and file_sha256(root / file) != info["sha256"]):
            raise DataValidationError(f"{root / file}: missing or corrupt cache shard")
    return index


class StreamedCacheTeacher(TeacherAdapter):
    """Serves a teacher's cached outputs from the batch itself (``batch.extras``).
    ``teacher_params``: the cached model's parameter count (its ``model`` here has none)."""

    def __init__(self, name: str, always_on: bool = False, teacher_params: Optional[int] = None, logits: bool = True):
        super().__init__(torch.nn.Module(), name=name, tap=None, always_on=always_on)
        self.teacher_params, self.logits = teacher_params, logits

    def forward_model(self, batch: Any) -> Optional[torch.Tensor]:  # not used: run() is overridden
        return None

    def run(self, batch: Any) -> TeacherOutput:
        extras = getattr(batch, "extras", {})
        key = f"teacher:{self.name}"
        if f"{key}:features" not in extras:
            raise DataValidationError(f"teacher '{self.name}': the batch carries no cached outputs (a streamed cache needs --data DATASET_DIR)")
        return TeacherOutput(features=extras[f"{key}:features"].float(), logits=extras[f"{key}:logits"] if self.logits else None, mask=None)


@register_teacher("streamed_cache")
def streamed_cache_teacher(*, name: str, cache: str, always_on: bool = False, context: TeacherContext) -> StreamedCacheTeacher:
    """A teacher precomputed by ``recsys-committee cache --data DATASET_DIR --teacher MODEL`` over
    a prepared dataset; its outputs are read next to the rows they belong to."""
    data = context.data
    if data is None or not hasattr(data, "attach_cache"):
        raise DataValidationError(f"teacher '{name}' (kind streamed_cache) needs a prepared dataset (--data DATASET_DIR)")
    index = open_streamed_cache(cache, data.manifest)
    data.attach_cache(name, Path(cache))
    return StreamedCacheTeacher(name, always_on=always_on, teacher_params=index.get("teacher_params"), logits=index.get("logits", True))

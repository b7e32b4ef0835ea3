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

import json
import time
from pathlib import Path
from typing import Any, Optional

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


def cache_key(dataset: Path, checkpoint: Path, tap: str) -> dict[str, Any]:
    manifest = json.loads((dataset / "manifest.json").read_text())
    return {"dataset": manifest["content_hash"], "teacher": file_sha256(checkpoint), "tap": tap}


class ShardInference:
    """A Ray Data actor: loads the teacher once, then turns each input shard it is handed into an
    output shard (features at the tap + logits, one row group per input row group)."""

    def __init__(self, dataset: str, out: str, checkpoint: str, tap: str, batch_size: int, dtype: str):
        torch.set_num_threads(1)
        from recsys_committee.data.prepared.stream import open_prepared
        from recsys_committee.models.trained import RecModelTeacher, load_trained_model

        self.data = open_prepared(dataset)
        self.teacher = RecModelTeacher(load_trained_model(checkpoint, self.data, who="teacher file").eval(), name="cache", tap=tap)
        self.out, self.batch_size, self.dtype = Path(out), batch_size, np.float16 if dtype == "float16" else np.float32

    @torch.no_grad()
    def shard(self, split: str, file: str) -> dict[str, Any]:
        target = self.out / file
        if target.is_file():
            return {"file": file, "rows": pq.ParquetFile(target).metadata.num_rows, "seconds": 0.0, "sha256": file_sha256(target), "skipped": True}
        source = self.data.dataset(split)
        units = [u for u in source.units if u.file == file]
        start = time.perf_counter()
        rows = 0
        with atomic_path(target) as tmp:
            writer = None
            for unit in units:
                batch = source.to_batch(source._read([unit], with_caches=False))
                parts = [self.teacher.run(batch.subset(torch.arange(i, min(i + self.batch_size, len(batch))))) for i in range(0, len(batch), self.batch_size)]
                feats = torch.cat([p.features for p in parts]).float().numpy().astype(self.dtype)
                logits = torch.cat([p.logits for p in parts]).float().numpy()
                table = pa.table({"features": pa.FixedSizeListArray.from_arrays(pa.array(feats.reshape(-1)), feats.shape[1]), "logits": pa.array(logits)})
                writer = writer or pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table, row_group_size=unit.rows)
                rows += unit.rows
            if writer is not None:
                writer.close()
        return {"file": file, "rows": rows, "seconds": time.perf_counter() - start, "sha256": file_sha256(target), "skipped": False}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        records = [self.shard(str(s), str(f)) for s, f in zip(batch["split"], batch["file"])]
        return {k: [r[k] for r in records] for k in records[0]}


def build_streamed_cache(dataset: str | Path, out: str | Path, checkpoint: str | Path, tap: str, actors: int = 1, batch_size: int = 4096,
                         dtype: str = "float16") -> dict[str, Any]:
    """Every shard of every split through the teacher on ``actors`` Ray actors (one CPU each, one
    GPU each when Ray sees GPUs); returns (and writes) the index."""
    import ray
    from ray.data import ActorPoolStrategy

    from recsys_committee.train.ray_entry import ensure_ray

    dataset, out, checkpoint = Path(dataset).resolve(), Path(out).resolve(), Path(checkpoint).resolve()
    key = cache_key(dataset, checkpoint, tap)
    index_path = out / INDEX
    if index_path.is_file() and json.loads(index_path.read_text())["key"] != key:
        raise DataValidationError(f"{out}: a cache of another dataset / teacher / tap; choose another folder")
    from recsys_committee.data.prepared.stream import open_prepared
    from recsys_committee.models.trained import load_trained_model

    teacher = load_trained_model(checkpoint, open_prepared(dataset), who="teacher file")  # a teacher of other data: one line here, not in every actor
    teacher_params = sum(p.numel() for p in teacher.parameters())
    out.mkdir(parents=True, exist_ok=True)
    write_json(index_path, {"format": FORMAT, "key": key, "complete": False})
    manifest = json.loads((dataset / "manifest.json").read_text())
    items = [{"split": s, "file": sh["file"]} for s in SPLITS for sh in manifest["shards"][s]]
    ensure_ray()
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= actors else 0
    start = time.perf_counter()
    records = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        ShardInference, fn_constructor_kwargs={"dataset": str(dataset), "out": str(out), "checkpoint": str(checkpoint), "tap": tap,
                                              "batch_size": batch_size, "dtype": dtype},
        batch_size=1, num_cpus=1, num_gpus=gpus, compute=ActorPoolStrategy(min_size=actors, max_size=actors)).take_all()
    seconds = time.perf_counter() - start
    computed = [r for r in records if not r["skipped"]]
    index = {"format": FORMAT, "key": key, "complete": True, "actors": actors, "dtype": dtype, "teacher_params": teacher_params,
             "shards": {r["file"]: {"rows": int(r["rows"]), "sha256": r["sha256"]} for r in records},
             "rows": int(sum(r["rows"] for r in records)), "seconds": seconds,
             "examples_per_s": sum(r["rows"] for r in computed) / seconds if computed else None}
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

    def __init__(self, name: str, always_on: bool = False, teacher_params: Optional[int] = None):
        super().__init__(torch.nn.Module(), name=name, tap=None, always_on=always_on)
        self.teacher_params = teacher_params

    def forward_model(self, batch: Any) -> Optional[torch.Tensor]:  # not used: run() is overridden
        return None

    def run(self, batch: Any) -> TeacherOutput:
        extras = getattr(batch, "extras", {})
        key = f"teacher:{self.name}"
        if f"{key}:features" not in extras:
            raise DataValidationError(f"teacher '{self.name}': the batch carries no cached outputs (a streamed cache needs --data DATASET_DIR)")
        return TeacherOutput(features=extras[f"{key}:features"].float(), logits=extras[f"{key}:logits"], mask=None)


@register_teacher("streamed_cache")
def streamed_cache_teacher(*, name: str, cache: str, always_on: bool = False, context: TeacherContext) -> StreamedCacheTeacher:
    """A teacher precomputed by ``recsys-committee cache --data DATASET_DIR --teacher MODEL`` over
    a prepared dataset; its outputs are read next to the rows they belong to."""
    data = context.data
    if data is None or not hasattr(data, "attach_cache"):
        raise DataValidationError(f"teacher '{name}' (kind streamed_cache) needs a prepared dataset (--data DATASET_DIR)")
    index = open_streamed_cache(cache, data.manifest)
    data.attach_cache(name, Path(cache))
    return StreamedCacheTeacher(name, always_on=always_on, teacher_params=index.get("teacher_params"))

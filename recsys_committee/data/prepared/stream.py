"""A prepared dataset (``recsys-committee prepare``), streamed: each rank reads only its share of
the parquet row groups, a window at a time, so a worker's memory does not grow with the data.

Why a per-rank row-group reader and not Ray Data's ``iter_torch_batches``: the runs we keep
(DMP sharding, DCP checkpoints, the killed-worker drill) resume EXACTLY mid-epoch, and Ray 2.60's
data iterators keep no state. Here an epoch's order is a pure function of the manifest and the
loop's seeded generator (the rank's row groups permuted, rows shuffled within a window of row
groups), so resuming rebuilds the same order and skips the consumed batches without reading
them. Every rank gets the same number of full batches (the sharded embeddings' all-to-alls need
all ranks in step): row groups are dealt to ranks once, balanced by size, and every rank stops at
the smallest share. Evaluation reads contiguous row ranges per rank and gathers every
prediction, so AUC is over all rows, as in memory.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from recsys_committee.data.model_input.batching import RecBatch
from recsys_committee.data.features.featurize import Vocabularies
from recsys_committee.data.model_input.layout import FeatureLayout, RunDataFacts
from recsys_committee.data.model_input.model_data import spec_from_dict
from recsys_committee.data.prepared.build import FORMAT, MANIFEST
from recsys_committee.data.logs.schema import DataValidationError
from recsys_committee.train.distributed import DistContext

SHUFFLE_WINDOW = 8  # row groups shuffled together (the local shuffle buffer)


@dataclass(frozen=True)
class Unit:
    """One parquet row group: the reader's unit of I/O and of assignment to ranks."""

    file: str
    group: int
    rows: int
    source: str = ""  # transfer shards: "sampled" or "unlabeled" (the spec's two kinds of transfer row)


class PreparedSplit:
    """One split of a prepared dataset; quacks like ``RowSplit`` for the training loop
    (``num_batches`` / ``batches``) and streams evaluation (``eval_batches``)."""

    def __init__(self, root: Path, manifest: dict[str, Any], name: str, mean: torch.Tensor, std: torch.Tensor, window: int = SHUFFLE_WINDOW,
                 shards: Optional[list[str]] = None):
        """``shards``: the manifest splits whose shards this split streams (default: ``name``'s;
        a distillation's train split with its transfer rows streams both)."""
        self.root, self.name, self.window = root, name, window
        self.mean, self.std = mean, std
        self.dense_names: list[str] = list(manifest["schema"]["dense"])
        self.scalar: list[str] = list(manifest["schema"]["scalar"])
        self.jagged: list[str] = list(manifest["schema"]["jagged"])
        # what a batch is made of: a shard's text parts (for the LM's texts) are not read in training
        self.columns = list(dict.fromkeys(["example_id", "label", "timestamp", *self.scalar, *self.dense_names, *self.jagged]))
        self.units = [Unit(sh["file"], g, n, sh.get("source", "")) for part in (shards or [name]) for sh in manifest["shards"][part]
                      for g, n in enumerate(sh["row_groups"])]
        self._files: dict[str, pq.ParquetFile] = {}
        self.caches: dict[str, Path] = {}  # teacher name -> streamed cache folder (files aligned with the shards)

    def __len__(self) -> int:
        return sum(u.rows for u in self.units)

    def with_units(self, units: list[Unit]) -> "PreparedSplit":
        """The same split reading ``units`` instead (a train split with its transfer rows, the
        transfer rows of one source); the attached caches go with it."""
        split = copy.copy(self)
        split.__dict__.pop("labels", None)  # cached over the old units
        split.__dict__.pop("users", None)
        split.units, split._files, split.caches = list(units), {}, dict(self.caches)
        return split

    # ------------------------------------------------------------------ reading
    def _open(self, path: Path) -> pq.ParquetFile:
        if path not in self._files:
            self._files[path] = pq.ParquetFile(path)
        return self._files[path]

    def read_unit(self, unit: Unit, columns: Optional[list[str]] = None) -> pa.Table:
        """One row group with the columns named (all of them by default: the LM's text parts too)."""
        return self._open(self.root / unit.file).read_row_group(unit.group, columns=columns, use_threads=False)

    def _read(self, units: list[Unit], with_caches: bool = True) -> pa.Table:
        """The row groups ``units``; each attached teacher cache's matching row group is appended
        as ``teacher:<name>:features`` / ``:logits`` columns (same rows, same order)."""
        tables = []
        for u in units:
            table = self._open(self.root / u.file).read_row_group(u.group, columns=self.columns, use_threads=False)  # parallelism is the workers'
            for name, root in (self.caches.items() if with_caches else ()):
                cached = self._open(root / u.file).read_row_group(u.group, use_threads=False)
                for column in ("features", "logits"):
                    table = table.append_column(f"teacher:{name}:{column}", cached.column(column))
            tables.append(table)
        return pa.concat_tables(tables) if len(tables) > 1 else tables[0]

    def to_batch(self, table: pa.Table) -> RecBatch:
        """Arrow rows -> a RecBatch: list columns become (values, lengths) from their offsets, no
        per-row Python."""
        col = lambda c: table.column(c).to_numpy()  # noqa: E731
        sparse: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        n = table.num_rows
        for k in self.scalar:
            sparse[k] = (torch.from_numpy(col(k).astype(np.int64)), torch.ones(n, dtype=torch.long))
        for k in self.jagged:
            arr = table.column(k).combine_chunks()
            values = arr.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
            lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False).astype(np.int64)
            sparse[k] = (torch.from_numpy(values), torch.from_numpy(lengths))
        if self.dense_names:
            dense = torch.from_numpy(np.stack([col(c).astype(np.float32) for c in self.dense_names], 1))
            dense = (dense - self.mean) / self.std
        else:
            dense = torch.zeros(n, 0)
        extras = {}
        for name in self.caches:
            feats = table.column(f"teacher:{name}:features").combine_chunks()
            width = feats.type.list_size
            extras[f"teacher:{name}:features"] = torch.from_numpy(feats.flatten().to_numpy(zero_copy_only=False).reshape(n, width).copy())
            extras[f"teacher:{name}:logits"] = torch.from_numpy(col(f"teacher:{name}:logits").astype(np.float32))
        return RecBatch(labels=torch.from_numpy(col("label").astype(np.float32)), example_ids=torch.from_numpy(col("example_id").astype(np.int64)),
                        users=torch.from_numpy(col("user_id").astype(np.int64)), dense=dense, sparse=sparse, extras=extras)

    def take_rows(self, positions: np.ndarray, every_column: bool = False) -> pa.Table:
        """The rows at ``positions`` (manifest order, in the order given), reading only the row
        groups that hold them: the training columns with the attached caches, or
        (``every_column``) every stored column, the LM's text parts too."""
        positions = np.asarray(positions, dtype=np.int64)
        starts = np.cumsum([0] + [u.rows for u in self.units])
        where = np.searchsorted(starts, positions, side="right") - 1
        needed = np.unique(where)
        units = [self.units[i] for i in needed]
        table = (pa.concat_tables([self.read_unit(u) for u in units], promote_options="default") if every_column
                 else self._read(units))
        read_offsets = np.cumsum([0] + [u.rows for u in units])[:-1]  # where each needed group starts in ``table``
        local = read_offsets[np.searchsorted(needed, where)] + positions - starts[where]
        return table.take(pa.array(local))

    def batch(self, rows: torch.Tensor) -> RecBatch:
        """The rows ``rows`` (positions in manifest order): for small look-ups (the committee's
        probe batch, tests), not for epochs."""
        return self.to_batch(self.take_rows(rows.numpy()))

    def column(self, name: str) -> torch.Tensor:
        """One column over the whole split in manifest order (labels, users for metrics)."""
        files = list(dict.fromkeys(u.file for u in self.units))
        parts = [pq.read_table(self.root / f, columns=[name]).column(name).to_numpy() for f in files]
        return torch.from_numpy(np.concatenate(parts) if parts else np.zeros(0))

    @cached_property
    def labels(self) -> torch.Tensor:
        return self.column("label").float()

    @cached_property
    def users(self) -> torch.Tensor:
        return self.column("user_id").long()

    # ------------------------------------------------------------------ training order
    def rank_units(self, ctx: DistContext) -> list[list[Unit]]:
        """Row groups dealt to ranks once, largest first to the emptiest rank (balanced within a
        row group), the same on every rank."""
        shares: list[list[Unit]] = [[] for _ in range(ctx.world_size)]
        sizes = [0] * ctx.world_size
        for u in sorted(self.units, key=lambda u: -u.rows):
            r = sizes.index(min(sizes))
            shares[r].append(u)
            sizes[r] += u.rows
        return shares

    def num_batches(self, batch_size: int, rows: Any = None, ctx: Optional[DistContext] = None) -> int:
        """Full batches every rank can run (``rows`` is the in-memory path's row map: unused)."""
        ctx = ctx or DistContext.from_process_group()
        return min(sum(u.rows for u in share) for share in self.rank_units(ctx)) // batch_size

    def batches(self, batch_size: int, shuffle: bool = False, generator: Optional[torch.Generator] = None, rows: Any = None, start: int = 0,
                ctx: Optional[DistContext] = None) -> Iterator[RecBatch]:
        """This rank's batches of one epoch; ``start`` skips that many without reading them."""
        ctx = ctx or DistContext.from_process_group()
        total = self.num_batches(batch_size, ctx=ctx)
        units = self.rank_units(ctx)[ctx.rank]
        if shuffle:
            units = [units[i] for i in torch.randperm(len(units), generator=generator).tolist()]
        windows = [units[i : i + self.window] for i in range(0, len(units), self.window)]

        def plan() -> Iterator[tuple[list[Unit], Optional[torch.Tensor], int]]:
            """(window, its row permutation, rows of it already consumed); the permutations are
            drawn window by window whether or not the window is read, so a resumed epoch draws
            exactly what the unbroken one did."""
            skip = start * batch_size
            for w in windows:
                n = sum(u.rows for u in w)
                perm = torch.randperm(n, generator=generator) if shuffle else None
                if skip >= n:
                    skip -= n
                    continue
                yield w, perm, skip
                skip = 0

        def load(item: tuple[list[Unit], Optional[torch.Tensor], int]) -> pa.Table:
            w, perm, drop = item
            table = self._read(w)
            if perm is not None:
                table = table.take(pa.array(perm.numpy()))
            return table.slice(drop)

        emitted, buffer = start, None
        todo = plan()
        with ThreadPoolExecutor(1) as pool:  # read the next window while this one trains
            first = next(todo, None)
            ahead = pool.submit(load, first) if first is not None else None
            while ahead is not None and emitted < total:
                table = ahead.result()
                following = next(todo, None)
                ahead = pool.submit(load, following) if following is not None else None
                buffer = pa.concat_tables([buffer, table]) if buffer is not None and buffer.num_rows else table
                while buffer.num_rows >= batch_size and emitted < total:
                    yield self.to_batch(buffer.slice(0, batch_size))
                    buffer = buffer.slice(batch_size)
                    emitted += 1
            if ahead is not None:
                ahead.cancel()

    # ------------------------------------------------------------------ evaluation
    def eval_batches(self, batch_size: int, ctx: DistContext) -> Iterator[RecBatch]:
        """This rank's contiguous share in order, padded with the split's first row to the same
        length on every rank (same number of equal batches everywhere)."""
        first, real, per = ctx.contiguous_share(len(self))
        pieces, at = [], 0
        for u in self.units:
            lo, hi = max(first, at), min(first + real, at + u.rows)
            if lo < hi:
                pieces.append((u, lo - at, hi - lo))
            at += u.rows
        buffer, made = None, 0
        for u, off, n in pieces:
            table = self._read([u]).slice(off, n)
            buffer = pa.concat_tables([buffer, table]) if buffer is not None and buffer.num_rows else table
            while buffer.num_rows >= batch_size:
                yield self.to_batch(buffer.slice(0, batch_size))
                made += batch_size
                buffer = buffer.slice(batch_size)
        if per > made:
            pad = per - made - (buffer.num_rows if buffer is not None else 0)
            filler = self._read([self.units[0]]).slice(0, 1)
            tail = [t for t in (buffer, *([filler] * pad)) if t is not None and t.num_rows]
            rest = pa.concat_tables(tail)
            for i in range(0, rest.num_rows, batch_size):
                yield self.to_batch(rest.slice(i, batch_size))


@dataclass
class TableFacts:
    """What models read of a feature table (no rows: those stream)."""

    layout: FeatureLayout
    dense_names: list[str]
    cardinalities: dict[str, int]


@dataclass
class PreparedData(RunDataFacts):
    """A prepared dataset opened for a run: the same facts ``RecData`` gives models (layout,
    cardinalities, vocabularies, dense statistics) with streamed splits."""

    root: Path
    manifest: dict[str, Any]
    spec: Any
    vocab: Vocabularies
    table: TableFacts
    dense_stats: tuple[torch.Tensor, torch.Tensor]
    train: PreparedSplit
    val: PreparedSplit
    test: PreparedSplit
    raw: Any = None  # no raw tables in memory (an LM teacher's texts need the in-memory path)
    transfer: Optional[PreparedSplit] = None  # the spec's transfer rows (``prepare`` built them), None if it declares none
    _warm: Optional[torch.Tensor] = field(default=None, repr=False)

    def attach_cache(self, name: str, root: Path) -> None:
        """Stream a teacher's cached outputs with every split's rows (``RecBatch.extras``)."""
        for split in (self.train, self.val, self.test, *([self.transfer] if self.transfer is not None else [])):
            split.caches[name] = Path(root)

    def with_transfer(self) -> "PreparedData":
        """The same data whose train split also streams the transfer shards (their row groups
        dealt and shuffled with the labeled ones): what a distillation with ``committee.transfer``
        trains on. Warm users stay those with a labeled train row."""
        if self.transfer is None or len(self.transfer) == 0:
            raise DataValidationError(f"{self.root}: committee.transfer is on but the prepared dataset has no transfer rows: declare them in "
                                      "the data spec's 'transfer:' section and prepare it again")
        for name, cache in self.train.caches.items():
            missing = [u.file for u in self.transfer.units if not (cache / u.file).is_file()]
            if missing:
                raise DataValidationError(f"{cache}: teacher '{name}''s cache holds no outputs for the transfer rows ({missing[0]}): rebuild it "
                                          "(recsys-committee cache) or pass data.transfer_per_row=0 to distil on the labeled rows only")
        warm = self.warm_users()
        return dataclasses.replace(self, train=self.train.with_units([*self.train.units, *self.transfer.units]), _warm=warm)

    def warm_users(self) -> torch.Tensor:
        """Users with a training row: a streaming distinct over the train shards' user column
        (memory in users, not rows)."""
        if self._warm is None:
            import polars as pl

            files = [str(self.root / f) for f in dict.fromkeys(u.file for u in self.train.units)]
            users = pl.scan_parquet(files).select(pl.col("user_id").unique().sort()).collect()["user_id"]
            self._warm = torch.from_numpy(users.to_numpy().astype(np.int64))
        return self._warm


def open_prepared(root: str | Path) -> PreparedData:
    """Open DATASET_DIR (its manifest); one clear error if it is not a finished prepared dataset."""
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        raise DataValidationError(f"{root}: no {MANIFEST} (not a prepared dataset, or its prepare did not finish: rerun prepare to resume it)")
    try:
        manifest = json.loads(path.read_text())
        if manifest.get("format") != FORMAT:
            raise ValueError(f"format {manifest.get('format')!r}, expected {FORMAT!r}")
        spec = spec_from_dict(manifest["spec"])
        vocab = Vocabularies(**manifest["vocabularies"])
        mean = torch.tensor(manifest["dense_stats"]["mean"], dtype=torch.float32)
        std = torch.tensor(manifest["dense_stats"]["std"], dtype=torch.float32)
        table = TableFacts(FeatureLayout.from_dict(manifest["layout"]), list(manifest["schema"]["dense"]), dict(manifest["cardinalities"]))
        splits = {name: PreparedSplit(root, manifest, name, mean, std) for name in ("train", "val", "test")}
        transfer = PreparedSplit(root, manifest, "transfer", mean, std) if "transfer" in manifest["shards"] else None
    except (ValueError, KeyError, TypeError) as exc:
        raise DataValidationError(f"{path}: corrupt manifest ({type(exc).__name__}: {exc})") from exc
    for name, split in (*splits.items(), *([("transfer", transfer)] if transfer is not None else [])):
        missing = [u.file for u in split.units if not (root / u.file).is_file()]
        if missing:
            raise DataValidationError(f"{root / missing[0]}: shard missing from the prepared dataset ({name} split)")
    return PreparedData(root=root, manifest=manifest, spec=spec, vocab=vocab, table=table, dense_stats=(mean, std), transfer=transfer, **splits)

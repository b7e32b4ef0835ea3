"""``recsys-committee prepare``: a data spec -> a prepared dataset, built out of core.

Why out of core and why buckets: a window query over all rows (a user's history, an item's past
statistics) buffers its whole input, so memory grows with the log. Every past-only feature only
needs the rows of ONE user (histories, user stats) or ONE item (item stats), so the rows are
first written bucketed by user (``crc32(user) % B``) and, narrow, by item; each bucket is then
featurised on its own by the same ``featurize`` the in-memory path runs, so both paths give the
same features. A bucket is then read and featurised one time range at a time (``BucketPieces``),
with each key's running sums and each user's last rows carried between pieces, because on a
skewed log one user or item holds a large share of its bucket. Memory is bounded by a source
chunk and a piece, never by the whole log nor by its hottest key.

Steps (each resumable; a rerun skips what finished, and a file is only ever renamed into place
once complete, so a partial file is never taken for a finished one):

1. ingest   source chunks -> checked and typed (``reader.check_rows``) -> ``stage/ub=*/c-*.parquet``
            (and the narrow item rows -> ``istage/ib=*/c-*.parquet``); the spec's
            ``transfer.unlabeled`` files the same way as ``t-*`` files
2. split    exact split boundaries: the row at position k of the global (time, user, item, source
            row) order, found by counting (a few passes over the time column, no global sort)
            (``partitions.py``)
3. vocab    vocabularies and the rating prior from the train split, file by file
   sampled  ``transfer.sampled``: pairs drawn per user bucket -> ``s-*`` files (``sampled.py``)
4. items    per item bucket: past-only item statistics -> ``istats/ub=*/ib-*.parquet``
5. users    per user bucket: ``featurize`` -> ``{train,val,test,transfer}/part-*.parquet`` (row
            groups of ``row_group_rows``; with text templates also each row's rendered parts, see
            ``texts.py``) + the bucket's dense sums; transfer rows are nobody's past
6. manifest row counts, schema, vocabularies, dense statistics, boundaries, content hash, and
            what the LM teacher's texts are made of (``text/``)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from recsys_committee.data.features.transfer import unlabel
from recsys_committee.data.features.featurize import (CONTRIBUTES, Vocabularies, featurize, history_columns, longest_history, past_stats_carried,
                                                      vocab_from_parts, vocab_parts)
from recsys_committee.data.logs.reader import ORDER_TIEBREAK, _files, check_rows, side_tables
from recsys_committee.data.logs.schema import DataValidationError
from recsys_committee.errors import ConfigError
from recsys_committee.data.logs.spec import DataSpec
from recsys_committee.data.prepared.sampled import stage_sampled
from recsys_committee.data.prepared.partitions import (SPLIT_CODE, SPLITS, TRANSFER, BucketPieces, write_atomic, bucket_of, split_boundaries,
                                                       split_expr)
from recsys_committee.data.prepared.texts import PARTS, STAGE_DIR, LastItemTexts, finish_text, row_parts, text_columns
from recsys_committee.files import atomic_path, file_sha256, write_json

MANIFEST = "manifest.json"
FORMAT = "recsys-committee-prepared/1"


@dataclass(frozen=True)
class PrepareOptions:
    bucket_rows: int = 500_000  # rows per bucket on average (sets the bucket count; a hot key's bucket is larger)
    chunk_rows: int = 500_000  # source rows read at a time
    row_group_rows: int = 4096  # the streaming reader's unit
    piece_rows: int = 100_000  # rows featurised at a time within a bucket (what a hot user's bucket holds at once)
    num_workers: int = 1  # > 1: buckets run as Ray tasks
    pool_bin_rows: int = 2_000_000  # transfer.sampled: train rows per bin of the popularity pool (what a draw holds at once)

    def __post_init__(self) -> None:
        for name, value in dataclasses.asdict(self).items():
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"prepare: --{name.replace('_', '-')} must be a positive integer, got {value!r}")


def is_prepared(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


# --------------------------------------------------------------------------- small helpers
def _scan(path: Path, spec: DataSpec) -> pl.LazyFrame:
    if path.suffix == ".parquet":
        return pl.scan_parquet(path)
    if path.suffix in (".inter", ".user", ".item"):  # RecBole atomic files: tab, `name:type` headers
        lf = pl.scan_csv(path, separator="\t", infer_schema=False, quote_char=None)
        return lf.rename({c: c.split(":", 1)[0] for c in lf.collect_schema().names()})
    return pl.scan_csv(path, separator=spec.separator, infer_schema_length=10_000)


def _read_chunks(path: Path, spec: DataSpec, chunk_rows: int) -> Iterator[pl.DataFrame]:
    """A source file ``chunk_rows`` rows at a time. Parquet is read by pyarrow a row group at a
    time: polars' streaming ``collect_batches`` buffered ~0.3 GiB more on a 10M-row file."""
    if path.suffix == ".parquet":
        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
            yield pl.from_arrow(batch)
        return
    yield from _scan(path, spec).collect_batches(chunk_size=chunk_rows)


def source_chunks(spec: DataSpec, chunk_rows: int) -> Iterator[tuple[int, pl.DataFrame]]:
    """(chunk number, rows with ``__src``) over the interaction files in glob order; ``__src``
    numbers rows across files exactly as ``reader.read_rows`` does."""
    offset, number = 0, 0
    for path in _files(spec.interactions):
        try:
            for chunk in _read_chunks(path, spec, chunk_rows):
                if chunk.height == 0:
                    continue
                yield number, chunk.with_row_index(ORDER_TIEBREAK, offset=offset).with_columns(pl.col(ORDER_TIEBREAK).cast(pl.Int64))
                offset += chunk.height
                number += 1
        except DataValidationError:
            raise
        except Exception as exc:
            raise DataValidationError(f"{path}: not a readable table ({type(exc).__name__}: {exc})") from exc


def count_source_rows(spec: DataSpec) -> int:
    return sum(int(_scan(p, spec).select(pl.len()).collect().item()) for p in _files(spec.interactions))


def _needed_columns(spec: DataSpec) -> list[str]:
    cols = [spec.user, spec.item, spec.time, "__label", ORDER_TIEBREAK]
    cols += [spec.rating] if spec.rating else []
    cols += [c.column for c in spec.categorical] + [m.column for m in spec.multi_valued] + list(spec.dense)
    cols += [CONTRIBUTES] if spec.transfer else []  # False on transfer rows: past-only features, nobody's past
    return list(dict.fromkeys(cols))


# --------------------------------------------------------------------------- 1. ingest
def ingest(spec: DataSpec, out: Path, buckets: int, chunk_rows: int, log: Callable[[str], None]) -> int:
    """The interaction files, checked chunk by chunk, staged by user and by item bucket (``c-*``)."""
    def checked(chunk: pl.DataFrame, sides: dict) -> pl.DataFrame:
        rows = check_rows(chunk, spec, sides)
        return rows.with_columns(pl.lit(True).alias(CONTRIBUTES)) if spec.transfer else rows

    return _ingest_chunks(spec, spec, out, buckets, chunk_rows, "c", checked, lambda total: log(f"prepare: ingested {total:,} rows"))


def ingest_unlabeled(spec: DataSpec, out: Path, buckets: int, chunk_rows: int, first_id: int, log: Callable[[str], None]) -> int:
    """The spec's ``transfer.unlabeled`` files, chunk by chunk, checked as the in-memory path
    checks them (no label column needed) and staged as transfer rows (``t-*`` files): label
    NaN, rating null, ``CONTRIBUTES`` False. Their source-row ids follow the labeled rows'
    (``first_id`` on). Which of them fall in the train period is decided with the split."""
    source = dataclasses.replace(spec, interactions=spec.transfer["unlabeled"]["interactions"], rating=None)
    labeled = pl.read_parquet_schema(next((out / "stage").glob("ub=*/c-*.parquet")))

    def unlabeled(chunk: pl.DataFrame, sides: dict) -> pl.DataFrame:
        chunk = chunk.with_columns((pl.col(ORDER_TIEBREAK) + first_id).alias(ORDER_TIEBREAK))
        rows = check_rows(chunk, source, sides, require_label=False)  # errors name this file
        return unlabel(spec, _ids_typed_as(rows, spec, labeled, source.interactions))

    return _ingest_chunks(spec, source, out, buckets, chunk_rows, "t", unlabeled, lambda total: log(f"prepare: staged {total:,} unlabeled rows (transfer)"))


def _ids_typed_as(rows: pl.DataFrame, spec: DataSpec, labeled: pl.Schema, where: str) -> pl.DataFrame:
    """The user and item ids of ``rows`` with the labeled rows' types. Why: a csv of impressions
    reads ids "123" as numbers where the labeled parquet holds text; uncast, a user's rows would
    land in another bucket (an id's bucket is its number modulo B, or the crc32 of its text) and
    miss their own past."""
    for key, column in (("columns.user", spec.user), ("columns.item", spec.item)):
        if rows[column].dtype != labeled[column]:
            try:
                rows = rows.with_columns(pl.col(column).cast(pl.String).cast(labeled[column]) if labeled[column] == pl.String or rows[column].dtype == pl.String
                                         else pl.col(column).cast(labeled[column]))
            except Exception as exc:
                raise DataValidationError(f"{where}: column '{column}' ({spec.where(key)}) is {rows[column].dtype}, the labeled rows' is "
                                          f"{labeled[column]}, and its values do not convert") from exc
    return rows


def _ingest_chunks(spec: DataSpec, source: DataSpec, out: Path, buckets: int, chunk_rows: int, prefix: str,
                   checked: Callable[[pl.DataFrame, dict], pl.DataFrame], progress: Callable[[int], None]) -> int:
    """``source``'s interaction files, chunk by chunk: ``checked(chunk, sides)`` -> staged as
    ``{prefix}-N`` files; a chunk staged by an earlier, interrupted prepare is skipped."""
    # side columns no feature nor text template reads (long descriptions) are never joined into a chunk
    needed = set(_needed_columns(spec)) | set(text_columns(spec))
    sides = {what: (path, key, table.select([c for c in table.columns if c == key or c in needed]))
             for what, (path, key, table) in side_tables(spec).items()}
    done_dir = out / "stage" / "_done"
    total = 0
    for number, chunk in source_chunks(source, chunk_rows):
        marker = done_dir / f"{prefix}-{number:05d}.json"
        if marker.is_file():
            total += json.loads(marker.read_text())["rows"]
            continue
        rows = checked(chunk, sides)
        _stage(spec, rows, out, buckets, f"{prefix}-{number:05d}")
        write_json(marker, {"rows": rows.height})
        total += rows.height
        progress(total)
    return total


def _stage(spec: DataSpec, rows: pl.DataFrame, out: Path, buckets: int, name: str) -> None:
    """Checked rows -> their user bucket's stage file and, narrow, their item bucket's."""
    rows = rows.select(*_needed_columns(spec), *row_parts(spec, rows))  # the LM's text parts rendered here, where the sides are joined
    rows = rows.with_columns(bucket_of(rows[spec.user], buckets).alias("__ub"), bucket_of(rows[spec.item], buckets).alias("__ib"))
    for (ub,), part in rows.partition_by("__ub", as_dict=True).items():
        write_atomic(part.drop("__ub", "__ib"), out / "stage" / f"ub={ub:05d}" / f"{name}.parquet")
    narrow = rows.select(spec.user, spec.item, spec.time, "__label", *([spec.rating] if spec.rating else []), ORDER_TIEBREAK,
                         *([CONTRIBUTES] if spec.transfer else []), "__ub", "__ib")
    for (ib,), part in narrow.partition_by("__ib", as_dict=True).items():
        write_atomic(part.drop("__ib"), out / "istage" / f"ib={ib:05d}" / f"{name}.parquet")


# --------------------------------------------------------------------------- 3. vocabularies
def fit_vocab_out_of_core(spec: DataSpec, out: Path, bounds: dict[str, Any]) -> Vocabularies:
    parts = []
    for path in sorted((out / "stage").glob("ub=*/c-*.parquet")):
        rows = pl.read_parquet(path).with_columns(split_expr(spec, bounds)).filter(pl.col("__split") >= 0)
        parts.append(vocab_parts(spec, rows, rows["__split"] == 0))
    return vocab_from_parts(spec, parts)


# --------------------------------------------------------------------------- 4. item statistics
NARROW_PIECE_FACTOR = 5  # an item piece holds ~6 narrow columns, not a user piece's histories: 5x the rows in less memory
ITEM_STATS_ROW_GROUP = 8192  # rows per row group of the item statistics (what a user piece's time filter can skip)


def item_bucket(spec: DataSpec, out: Path, ib: int, bounds: dict[str, Any], vocab: Vocabularies, piece_rows: int = 100_000) -> None:
    """Past-only item statistics of one item bucket, a time piece at a time with each item's sums
    carried, written per (user bucket, piece) with each row's source row and time (the user
    bucket joins them by source row, reading only its own pieces' times)."""
    marker = out / "istats" / "_done" / f"ib-{ib:05d}"
    if marker.is_file():
        return
    for stale in (out / "istats").glob(f"ub=*/ib-{ib:05d}-*.parquet"):  # a crashed run's pieces (the count may differ)
        stale.unlink()
    files = sorted((out / "istage" / f"ib={ib:05d}").glob("*.parquet"))  # c-*: labeled rows; t-*, s-*: transfer rows (unlabeled, sampled)
    carry = None
    pieces = BucketPieces(spec, files, bounds, piece_rows * NARROW_PIECE_FACTOR) if files else []
    for number, rows in enumerate(pieces):
        frame = rows.select(pieces.key_of(rows, spec.item).alias("__item_key"), pl.col(spec.time).alias("timestamp"), pl.col("__label").alias("label"),
                            *([pl.col(spec.rating).alias("rating")] if spec.rating else []), *([pl.col(CONTRIBUTES)] if spec.transfer else []))
        stats, carry = past_stats_carried(spec, frame, "__item_key", "item", vocab, carry)
        stats = stats.with_columns(rows[ORDER_TIEBREAK], rows[spec.time].alias("__time"), rows["__ub"])
        for (ub,), part in stats.partition_by("__ub", as_dict=True).items():
            # in time order, in small row groups: a user piece's time filter skips the rest of the file
            write_atomic(part.drop("__ub"), out / "istats" / f"ub={ub:05d}" / f"ib-{ib:05d}-{number:05d}.parquet", ITEM_STATS_ROW_GROUP)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()


# --------------------------------------------------------------------------- 5. user buckets
def _arrow_table(table: Any, index: np.ndarray) -> pa.Table:
    """The rows ``index`` of a FeatureTable as an Arrow table: scalar, label, dense columns and
    the jagged ones as ``list<int64>``."""
    import torch

    from recsys_committee.data.features.jagged import gather_jagged

    frame = table.frame[index]
    keep = ["example_id", "label", "timestamp", *table.layout.scalar, *table.dense_names]
    arrays = {c: frame[c].to_arrow() for c in dict.fromkeys(keep)}
    arrays["example_id"] = frame["example_id"].cast(pl.Int64).to_arrow()
    rows = torch.from_numpy(index.astype(np.int64))
    for name, (values, offsets) in table.jagged.items():
        v, lengths = gather_jagged(values, offsets, rows)
        offs = np.zeros(lengths.numel() + 1, dtype=np.int32)
        np.cumsum(lengths.numpy(), out=offs[1:])
        arrays[name] = pa.ListArray.from_arrays(pa.array(offs), pa.array(v.numpy().astype(np.int64)))
    return pa.table(arrays)


class _HistoryTail:
    """Each user's last ``keep`` rows seen so far, in history order: what the next piece's
    histories need of the pieces before it (memory: users x ``keep`` narrow rows, not the log)."""

    def __init__(self, keep: int) -> None:
        self.keep, self.rows = keep, None

    def context_for(self, user_keys: pl.Series) -> Optional[pl.DataFrame]:
        if self.rows is None:
            return None
        return self.rows.join(pl.DataFrame({"__user_key": user_keys.unique()}), on="__user_key", how="semi", maintain_order="left")

    def add(self, narrow: pl.DataFrame) -> None:
        """Take in a piece's rows. Only the piece is sorted: per user, the rows kept so far are in
        history order and strictly earlier than the piece's, so appending keeps that order."""
        piece = narrow.sort(["__user_key", "timestamp", "item_id"], maintain_order=True)
        rows = piece if self.rows is None else pl.concat([self.rows, piece], how="vertical_relaxed")
        self.rows = rows.group_by("__user_key", maintain_order=True).tail(self.keep)


class _ShardWriters:
    """One parquet shard per split for a bucket, appended piece by piece, each renamed into place
    only when the bucket is done (``atomic_path``), so a crash never leaves a finished-looking shard."""

    def __init__(self, out: Path, ub: int, row_group_rows: int) -> None:
        self.out, self.ub, self.row_group_rows = out, ub, row_group_rows
        self.stack, self.writers, self.paths, self.rows = ExitStack(), {}, {}, {}

    def write(self, name: str, table: pa.Table, source: Optional[str] = None) -> None:
        """Append ``table`` to the bucket's shard of split ``name`` (``source``: a shard per
        source of the transfer rows, so a run can take one of them)."""
        key = (name, source)
        if key not in self.writers:
            self.paths[key] = self.out / name / f"part-{self.ub:05d}{'-' + source if source else ''}.parquet"
            tmp = self.stack.enter_context(atomic_path(self.paths[key]))
            self.writers[key] = self.stack.enter_context(pq.ParquetWriter(tmp, table.schema))
            self.rows[key] = 0
        self.writers[key].write_table(table, row_group_size=self.row_group_rows)
        self.rows[key] += table.num_rows

    def close(self) -> dict[str, list[dict[str, Any]]]:
        """Finish every shard; their manifest entries, by split."""
        self.stack.close()
        shards: dict[str, list[dict[str, Any]]] = {}
        for (name, source), path in self.paths.items():
            groups = pq.ParquetFile(path).metadata
            shards.setdefault(name, []).append({"file": f"{name}/{path.name}", "rows": self.rows[(name, source)], "sha256": file_sha256(path),
                                                "row_groups": [groups.row_group(g).num_rows for g in range(groups.num_row_groups)],
                                                **({"source": source} if source else {})})
        return shards


def user_bucket(spec: DataSpec, out: Path, ub: int, bounds: dict[str, Any], vocab: Vocabularies, row_group_rows: int,
                piece_rows: int = 100_000, first_sampled: Optional[int] = None) -> dict[str, Any]:
    """Featurise one bucket of users; write its shard of each split; return (and record) its
    row counts, dense sums over train rows and the feature facts.

    Why in time-ordered pieces: a bucket holds every row of its users, and on a skewed log one
    user can hold a tenth of it. Each piece (``BucketPieces``) is featurised with what it cannot
    see alone: its users' statistics carried from the pieces before it, their last rows for the
    histories (``_HistoryTail``) and the item statistics of its time range. The features are the
    whole bucket's; memory is a piece's. Transfer rows with a source-row id from ``first_sampled``
    on are sampled pairs, the others unlabeled rows: each kind gets its own shard."""
    marker = out / "buckets" / f"ub-{ub:05d}.json"
    if marker.is_file():
        return json.loads(marker.read_text())
    record: dict[str, Any] = {"bucket": ub, "shards": {}, "rows": {s: 0 for s in (*SPLITS, *([TRANSFER] if spec.transfer else []))}}
    files = sorted((out / "stage" / f"ub={ub:05d}").glob("*.parquet"))  # c-*: labeled rows; t-*, s-*: transfer rows (unlabeled, sampled)
    item_stat_files = sorted((out / "istats" / f"ub={ub:05d}").glob("ib-*.parquet")) if "item_stats" in spec.derived else []
    item_stats_scan = pl.concat([pl.scan_parquet(f) for f in item_stat_files]) if item_stat_files else None  # planned once, filtered per piece
    tail = _HistoryTail(longest_history(spec))
    item_texts = LastItemTexts(spec)
    writers = _ShardWriters(out, ub, row_group_rows)
    carry, dense_n, dense_sum, dense_sumsq = None, 0, 0.0, 0.0
    with writers.stack:
        pieces = BucketPieces(spec, files, bounds, piece_rows) if files else []
        for piece in pieces:
            keys = pieces.key_of(piece, spec.user)
            user_stats = item_stats = None
            if "user_stats" in spec.derived:
                narrow = pl.DataFrame({"__user_key": keys, "timestamp": piece[spec.time], "label": piece["__label"],
                                       **({"rating": piece[spec.rating]} if spec.rating else {}),
                                       **({CONTRIBUTES: piece[CONTRIBUTES]} if spec.transfer else {})})
                user_stats, carry = past_stats_carried(spec, narrow, "__user_key", "user", vocab, carry)
            if item_stats_scan is not None:
                found = item_stats_scan.filter(pl.col("__time").is_between(piece[spec.time].min(), piece[spec.time].max())).drop("__time").collect()
                item_stats = piece.select(ORDER_TIEBREAK).join(found, on=ORDER_TIEBREAK, how="left", maintain_order="left").drop(ORDER_TIEBREAK)
            table = featurize(spec, piece, vocab, example_ids=piece[ORDER_TIEBREAK], user_keys=keys, item_stats=item_stats, user_stats=user_stats,
                              history_context=tail.context_for(keys) if tail.keep else None)
            logged = piece[CONTRIBUTES] if spec.transfer else None  # transfer rows are nobody's history nor item text
            if tail.keep:
                earlier = pl.DataFrame({"__user_key": keys}).hstack(table.frame.select(history_columns(spec)[1:]))
                tail.add(earlier if logged is None else earlier.filter(logged))
            item_texts.add(table.frame["item_id"] if logged is None else table.frame["item_id"].filter(logged),
                           piece if logged is None else piece.filter(logged))
            texts = [c for c in PARTS.values() if c in piece.columns]
            codes = piece["__split"].to_numpy()
            sampled = piece[ORDER_TIEBREAK].to_numpy() >= first_sampled if first_sampled is not None else np.zeros(piece.height, dtype=bool)
            parts = [(name, codes == SPLIT_CODE[name], None) for name in SPLITS]
            if spec.transfer:
                parts += [(TRANSFER, (codes == SPLIT_CODE[TRANSFER]) & ~sampled, "unlabeled"), (TRANSFER, (codes == SPLIT_CODE[TRANSFER]) & sampled, "sampled")]
            for name, rows_of, source in parts:
                index = np.nonzero(rows_of)[0]
                if index.size:
                    shard = _arrow_table(table, index)
                    for column in texts:
                        shard = shard.append_column(column, piece[column].gather(index).to_arrow())
                    writers.write(name, shard, source)
            train = np.nonzero(codes == 0)[0]
            dense = table.frame[train].select(table.dense_names).to_numpy().astype(np.float64) if table.dense_names else np.zeros((train.size, 0))
            dense_n, dense_sum, dense_sumsq = dense_n + int(train.size), dense_sum + dense.sum(0), dense_sumsq + (dense ** 2).sum(0)
            record["features"] = {"cardinalities": table.cardinalities, "dense_names": table.dense_names, "layout": table.layout.as_dict(),
                                  "jagged": sorted(table.jagged)}
            del table
        record["shards"] = writers.close()
        item_texts.write(out, ub)
    if "features" in record:
        record["rows"].update({name: sum(shard["rows"] for shard in shards) for name, shards in record["shards"].items()})
        width = len(record["features"]["dense_names"])
        record["dense"] = {"n": dense_n, "sum": (np.zeros(width) + dense_sum).tolist(), "sumsq": (np.zeros(width) + dense_sumsq).tolist()}
    write_json(marker, record)
    return record


# --------------------------------------------------------------------------- driver
def _run_many(fn: Callable[..., Any], args: list[tuple], workers: int) -> list[Any]:
    """Run ``fn(*a)`` for every ``a``: in-process, or as Ray tasks with ``workers > 1``."""
    if workers <= 1:
        return [fn(*a) for a in args]
    import ray

    from recsys_committee.train.ray_entry import ensure_ray

    ensure_ray()
    remote = ray.remote(num_cpus=1)(fn)
    return ray.get([remote.remote(*a) for a in args])


def prepare(spec: DataSpec, out: Path, options: PrepareOptions = PrepareOptions(), log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build (or finish building) the prepared dataset of ``spec`` in ``out``; returns the manifest."""
    if not spec.time:
        raise DataValidationError(f"{spec.where('columns.time')}: prepare needs a time column (the split and the past-only features are by time)")
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    plan_file = out / "plan.json"
    if plan_file.is_file():
        plan = json.loads(plan_file.read_text())
        if plan["spec"] != dataclasses.asdict(spec):
            raise DataValidationError(f"{out}: holds an unfinished prepare of a different data spec; remove it or pass --overwrite")
    else:
        source = count_source_rows(spec)
        wanted = min(source, int(spec.max_rows)) if spec.max_rows is not None else source
        plan = {"spec": dataclasses.asdict(spec), "source_rows": source, "buckets": max(1, math.ceil(wanted / options.bucket_rows)),
                "options": dataclasses.asdict(options)}
        write_json(plan_file, plan)
    buckets = int(plan["buckets"])
    total = ingest(spec, out, buckets, options.chunk_rows, log)
    if total == 0:
        raise DataValidationError(f"{spec.interactions}: no rows")
    unlabeled = ingest_unlabeled(spec, out, buckets, options.chunk_rows, int(plan["source_rows"]), log) if "unlabeled" in spec.transfer else 0
    stage = pl.scan_parquet(out / "stage" / "ub=*" / "c-*.parquet")
    bounds_file = out / "boundaries.json"
    if not bounds_file.is_file():
        write_json(bounds_file, split_boundaries(spec, stage, total))
    bounds = json.loads(bounds_file.read_text())
    vocab_file = out / "vocabularies.json"
    if not vocab_file.is_file():
        write_json(vocab_file, fit_vocab_out_of_core(spec, out, bounds).as_dict())
    vocab = Vocabularies(**json.loads(vocab_file.read_text()))
    log(f"prepare: {bounds['rows']:,} rows, {buckets} bucket(s), vocabularies fitted")
    first_sampled = int(plan["source_rows"]) + unlabeled if "sampled" in spec.transfer else None  # the sampled pairs' ids start there
    if first_sampled is not None:  # staged before the statistics: they are featurised like the logged rows
        stage_sampled(spec, out, buckets, bounds, first_sampled, options, _run_many, log)
    if "item_stats" in spec.derived:
        _run_many(item_bucket, [(spec, out, ib, bounds, vocab, options.piece_rows) for ib in range(buckets)], options.num_workers)
    records = _run_many(user_bucket, [(spec, out, ub, bounds, vocab, options.row_group_rows, options.piece_rows, first_sampled) for ub in range(buckets)],
                        options.num_workers)
    manifest = _manifest(spec, plan, bounds, vocab, records)
    manifest["text"] = finish_text(spec, out)
    for split, n in manifest["rows"].items():
        if n == 0 and split in SPLITS:
            raise DataValidationError(f"{spec.where('split')}: the {split} split is empty ({bounds['rows']} rows, fractions {spec.fractions})")
    manifest["prepare_seconds"] = time.perf_counter() - started
    for scratch in ("stage", "istage", "istats", "pool", STAGE_DIR):
        shutil.rmtree(out / scratch, ignore_errors=True)
    write_json(out / MANIFEST, manifest)
    log(f"prepare: wrote {out / MANIFEST} ({', '.join(f'{k} {v:,}' for k, v in manifest['rows'].items())} rows)")
    return manifest


def _manifest(spec: DataSpec, plan: dict[str, Any], bounds: dict[str, Any], vocab: Vocabularies, records: list[dict[str, Any]]) -> dict[str, Any]:
    facts = next((r["features"] for r in records if "features" in r), None)
    if facts is None:
        raise DataValidationError(f"{spec.interactions}: no rows left to prepare")
    names = [*SPLITS, *([TRANSFER] if any(TRANSFER in r["rows"] for r in records) else [])]
    rows = {s: sum(r["rows"].get(s, 0) for r in records) for s in names}
    n = sum(r["dense"]["n"] for r in records if "dense" in r)
    k = len(facts["dense_names"])
    s = np.sum([r["dense"]["sum"] for r in records if "dense" in r], axis=0) if k else np.zeros(0)
    ss = np.sum([r["dense"]["sumsq"] for r in records if "dense" in r], axis=0) if k else np.zeros(0)
    mean = s / max(n, 1)
    std = np.sqrt(np.maximum(ss - n * mean ** 2, 0) / max(n - 1, 1)).clip(min=1e-6)  # unbiased, as torch.std
    shards = {name: [shard for r in records for shard in r["shards"].get(name, [])] for name in names}
    content = hashlib.sha256("".join(sh["sha256"] for name in names for sh in shards[name]).encode()).hexdigest()
    return {
        "format": FORMAT, "spec": plan["spec"], "source_rows": plan["source_rows"], "buckets": plan["buckets"], "options": plan["options"],
        "rows": rows, "shards": shards, "boundaries": bounds, "vocabularies": vocab.as_dict(),
        "schema": {"scalar": facts["layout"]["scalar"], "jagged": facts["jagged"], "dense": facts["dense_names"],
                   "label": "label", "example_id": "example_id (the row's position in the source files)"},
        "cardinalities": facts["cardinalities"], "layout": facts["layout"],
        "dense_stats": {"mean": mean.tolist(), "std": std.tolist()}, "content_hash": content,
    }


def prepare_command(spec_path: Path, out: Path, options: PrepareOptions, overwrite: bool = False) -> dict[str, Any]:
    """The CLI's prepare: a finished dataset in ``out`` is refused unless ``overwrite``; an
    unfinished one of the same spec is resumed; anything else in ``out`` is refused."""
    from recsys_committee.data.logs.spec import load_spec
    from recsys_committee.train.out_dir import OutputExistsError

    spec = load_spec(spec_path)
    if out.is_dir() and any(out.iterdir()):
        finished, ours = (out / MANIFEST).is_file(), (out / "plan.json").is_file()
        if overwrite and (finished or ours):
            shutil.rmtree(out)
        elif finished:
            raise OutputExistsError(f"{out}: already holds a prepared dataset; pass --overwrite to rebuild it")
        elif not ours:
            raise OutputExistsError(f"{out}: not empty and not a prepared dataset; choose an empty folder")
    return prepare(spec, out, options)

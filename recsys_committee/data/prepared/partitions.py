"""How a prepared dataset's rows are cut: user / item buckets, the split codes (train, val, test
and the transfer rows'), exact split boundaries found by counting, and the time pieces a bucket
is read in.

Why a module of its own: ``build`` (the prepare steps) and ``sampled`` (the transfer pairs drawn
per user bucket) both read the staged rows through these, and neither should import the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from recsys_committee.data.features.featurize import CONTRIBUTES, crc32_of, entity_key
from recsys_committee.data.logs.reader import ORDER_TIEBREAK, sort_order
from recsys_committee.data.logs.spec import DataSpec
from recsys_committee.files import atomic_path

SPLITS = ("train", "val", "test")
SPLIT_CODE = {"train": 0, "val": 1, "test": 2, "transfer": 3}
TRANSFER = "transfer"  # the shards of the spec's transfer rows (rows without a label, for distillation)


def write_atomic(frame: pl.DataFrame | pa.Table, path: Path, row_group_rows: Optional[int] = None) -> None:
    table = frame.to_arrow() if isinstance(frame, pl.DataFrame) else frame
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=row_group_rows)


def bucket_of(series: pl.Series, buckets: int) -> pl.Series:
    """The bucket of each user / item: its integer id modulo B, else crc32 of its text modulo B
    (stable across runs and polars versions, unlike polars' ``hash``)."""
    if series.dtype.is_integer():
        return (series.cast(pl.Int64) % buckets).cast(pl.Int32)
    return (crc32_of(series) % buckets).cast(pl.Int32)


# --------------------------------------------------------------------------- split
def kth_time(lf: pl.LazyFrame, t: str, k: int) -> int:
    """The time of the row at position k (0-based) in time order, by narrowing a histogram of
    the time column (each pass is a streaming count; no sort of the whole column)."""
    lo, hi = (int(v) for v in lf.select(pl.col(t).min().alias("lo"), pl.col(t).max().alias("hi")).collect().row(0))
    below = 0
    while True:
        window = lf.filter(pl.col(t).is_between(lo, hi))
        if hi - lo < 4096:
            counts = window.group_by(t).len().sort(t).collect()
            cum = np.cumsum(counts["len"].to_numpy()) + below
            return int(counts[t][int(np.searchsorted(cum, k + 1))])
        width = (hi - lo) // 1024 + 1
        counts = window.group_by(((pl.col(t) - lo) // width).alias("bin")).len().sort("bin").collect()
        cum = np.cumsum(counts["len"].to_numpy()) + below
        at = int(np.searchsorted(cum, k + 1))
        bin_ = int(counts["bin"][at])
        below = int(cum[at - 1]) if at > 0 else below
        lo, hi = lo + bin_ * width, min(hi, lo + (bin_ + 1) * width - 1)


def kth_key(lf: pl.LazyFrame, spec: DataSpec, k: int) -> dict[str, Any]:
    """The (time, user, item, source row) key of the row at position k of the global order."""
    t = spec.time
    when = kth_time(lf, t, k)
    before = int(lf.filter(pl.col(t) < when).select(pl.len()).collect().item())
    ties = lf.filter(pl.col(t) == when).select(spec.user, spec.item, ORDER_TIEBREAK).collect().sort(sort_order(spec)[1:])
    row = ties.row(k - before, named=True)
    return {"time": when, "user": row[spec.user], "item": row[spec.item], "src": int(row[ORDER_TIEBREAK])}


def _before(spec: DataSpec, key: dict[str, Any]) -> pl.Expr:
    """Rows strictly before ``key`` in the global order (lexicographic on the four columns)."""
    t, u, i, s = pl.col(spec.time), pl.col(spec.user), pl.col(spec.item), pl.col(ORDER_TIEBREAK)
    return (t < key["time"]) | ((t == key["time"]) & ((u < key["user"]) | ((u == key["user"]) & ((i < key["item"]) | ((i == key["item"]) & (s < key["src"]))))))


def split_boundaries(spec: DataSpec, stage: pl.LazyFrame, total: int) -> dict[str, Any]:
    """Exact positions of the in-memory split (``temporal_split`` over the first ``max_rows``
    rows in time order) as keys; a random split hashes the source row (seeded)."""
    n = min(total, int(spec.max_rows)) if spec.max_rows is not None else total
    out: dict[str, Any] = {"rows": n, "kind": spec.split_kind}
    if n < total:
        out["cut"] = kth_key(stage, spec, n)
    if spec.split_kind == "temporal":
        n_train = int(round(n * spec.fractions[0]))
        n_val = int(round(n * spec.fractions[1]))
        out["val_from"] = kth_key(stage, spec, n_train)
        out["test_from"] = kth_key(stage, spec, n_train + n_val)
    if spec.transfer:  # transfer rows come from the train period: time at most the last train row's
        out["last_train_time"] = int(stage.with_columns(split_expr(spec, out)).filter(pl.col("__split") == 0).select(pl.col(spec.time).max()).collect().item())
    return out


def split_expr(spec: DataSpec, bounds: dict[str, Any]) -> pl.Expr:
    """0 train, 1 val, 2 test, 3 a transfer row of the train period, -1 beyond ``max_rows`` (or a
    transfer row after the train period)."""
    if bounds["kind"] == "temporal":
        code = pl.when(_before(spec, bounds["val_from"])).then(0).when(_before(spec, bounds["test_from"])).then(1).otherwise(2)
    else:  # random: a seeded hash of the source row (not the in-memory path's randperm draw)
        u = ((pl.col(ORDER_TIEBREAK) * 2654435761 + (spec.split_seed + 1) * 40503) % 4294967296).cast(pl.Float64) / 4294967296.0
        code = pl.when(u < spec.fractions[0]).then(0).when(u < spec.fractions[0] + spec.fractions[1]).then(1).otherwise(2)
    if "cut" in bounds:
        code = pl.when(_before(spec, bounds["cut"])).then(code).otherwise(-1)
    if "last_train_time" in bounds:  # a transfer row: its own split, when it is in the train period
        transfer = pl.when(pl.col(spec.time) <= bounds["last_train_time"]).then(SPLIT_CODE[TRANSFER]).otherwise(-1)
        code = pl.when(pl.col(CONTRIBUTES)).then(code).otherwise(transfer)
    return code.cast(pl.Int8).alias("__split")


# --------------------------------------------------------------------------- time pieces of a bucket
def time_pieces(times: np.ndarray, piece_rows: int) -> list[tuple[int, int]]:
    """[start, end) ranges of time-sorted rows, each about ``piece_rows`` long, cut only where
    the time changes: rows of one second are never split, so a piece's past is exactly the
    pieces before it."""
    pieces, start, n = [], 0, len(times)
    while start < n:
        end = min(start + max(piece_rows, 1), n)
        if end < n:
            same = np.searchsorted(times[end:], times[end - 1], side="right")  # the rest of the cut second
            end += int(same)
        pieces.append((start, end))
        start = end
    return pieces


class BucketPieces:
    """One bucket's staged rows (within the split's cut), read one time range at a time.

    Why: a bucket holds every row of its keys, and on a skewed log one user holds a tenth of
    the rows and one item a fifth. Only the bucket's time column is read whole; each piece is
    read with a time filter (parquet statistics skip the files and row groups outside it), so
    memory is a piece's, whatever the hottest key holds."""

    def __init__(self, spec: DataSpec, files: list[Path], bounds: dict[str, Any], piece_rows: int) -> None:
        self.spec = spec
        scans = [pl.scan_parquet(f) for f in files]
        rows = pl.concat(scans, how="vertical_relaxed") if len(scans) > 1 else scans[0]
        self.rows = rows.with_columns(split_expr(spec, bounds)).filter(pl.col("__split") >= 0)
        times = np.sort(self.rows.select(spec.time).collect()[spec.time].to_numpy())
        self.ranges = [(times[a].item(), times[b - 1].item()) for a, b in time_pieces(times, piece_rows)]
        self._numbering: dict[str, pl.DataFrame] = {}

    def __iter__(self) -> Iterator[pl.DataFrame]:
        for first, last in self.ranges:
            yield self.rows.filter(pl.col(self.spec.time).is_between(first, last)).collect().sort(sort_order(self.spec), maintain_order=True)

    def key_of(self, rows: pl.DataFrame, column: str) -> pl.Series:
        """``entity_key`` of a piece's users / items, numbered over the whole bucket so one user
        has one key in every piece (integer ids are their own key)."""
        if rows[column].dtype.is_integer():
            return entity_key(rows[column])
        if column not in self._numbering:
            distinct = self.rows.select(column).unique().collect().sort(column)
            self._numbering[column] = distinct.with_row_index("__key").with_columns(pl.col("__key").cast(pl.Int64))
        return rows.select(column).join(self._numbering[column], on=column, how="left", maintain_order="left")["__key"]

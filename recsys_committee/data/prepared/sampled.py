"""``transfer: {sampled: ...}`` out of core: unrated (user, item) pairs drawn by popularity as of
each train row's time, staged as transfer rows before the statistics are computed.

The in-memory sampler (``data/features/transfer.py``) draws, for every train row at time t, an
earlier train row uniformly at random (strictly before t's second) and takes its item: exactly
popularity-proportional. Here the same draw is made without the log in memory:

1. ``build_pool``: the train rows' items in global time order, cut into time bins of about
   ``bin_rows`` rows (each bin read with a time filter and sorted on its own: a range-partitioned
   sort, never the whole log at once). The number of train rows strictly before t is the rows of
   the bins before t's plus a binary search in t's bin.
2. ``sample_bucket``: per user bucket, a time piece at a time, the piece's train rows draw
   ``OVERSAMPLE`` x ``per_row`` positions in that global order (seeded per bucket), read the
   items there bin by bin, drop the items the user had rated strictly before t (the user's rows
   are all in the bucket) and the anchor's own, and keep the first ``per_row`` distinct ones.
   The pair takes the anchor's user, time and row columns and the drawn item's side-table
   columns, as in memory. It is staged like a logged row (``s-*`` files, label NaN,
   ``CONTRIBUTES`` False), so the item and user steps featurise it past-only at its time and
   count it in nobody's past.

The pairs follow the in-memory sampler's distribution, not its exact draws (another random
stream per bucket): a prepared dataset and an in-memory run of one spec distil on different,
equally drawn pairs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl

from recsys_committee.data.features.featurize import CONTRIBUTES
from recsys_committee.data.features.transfer import OVERSAMPLE, unlabel
from recsys_committee.data.logs.reader import ORDER_TIEBREAK, side_tables, sort_order
from recsys_committee.data.logs.spec import DataSpec
from recsys_committee.data.prepared.partitions import SPLIT_CODE, BucketPieces, kth_time, write_atomic, bucket_of, split_expr
from recsys_committee.data.prepared.texts import PARTS
from recsys_committee.files import write_json

POOL_DIR = "pool"


def _train_rows(spec: DataSpec, out: Path, bounds: dict[str, Any]) -> pl.LazyFrame:
    """The labeled train rows (narrow item-bucket files), lazily."""
    return (pl.scan_parquet(out / "istage" / "ib=*" / "c-*.parquet").with_columns(split_expr(spec, bounds))
            .filter(pl.col("__split") == SPLIT_CODE["train"]))


def build_pool(spec: DataSpec, out: Path, bounds: dict[str, Any], bin_rows: int) -> dict[str, Any]:
    """Write the train rows' (time, item) in global order as time bins; return (and record) the
    bins: their first second, row count and first global position."""
    marker = out / POOL_DIR / "pool.json"
    if marker.is_file():
        return json.loads(marker.read_text())
    train = _train_rows(spec, out, bounds)
    n = int(train.select(pl.len()).collect().item())
    cuts = sorted({kth_time(train, spec.time, k) for k in range(bin_rows, n, bin_rows)})
    edges = [None, *cuts, None]
    bins, start = [], 0
    for number, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        rows = train
        if lo is not None:
            rows = rows.filter(pl.col(spec.time) >= lo)
        if hi is not None:
            rows = rows.filter(pl.col(spec.time) < hi)
        rows = rows.select(spec.time, spec.user, spec.item, ORDER_TIEBREAK).collect().sort(sort_order(spec), maintain_order=True)
        file = f"bin-{number:05d}.parquet"
        write_atomic(rows.select(pl.col(spec.time).alias("time"), pl.col(spec.item).alias("item")), out / POOL_DIR / file)
        bins.append({"file": file, "rows": rows.height, "start": start, "from": None if lo is None else int(lo)})
        start += rows.height
    pool = {"rows": n, "bins": bins}
    write_json(marker, pool)
    return pool


class PoolReader:
    """Global positions in the pool -> items, and times -> pool sizes, one bin held at a time."""

    def __init__(self, out: Path, pool: dict[str, Any]) -> None:
        self.out, self.bins = out, pool["bins"]
        self.starts = np.array([b["start"] for b in self.bins], dtype=np.int64)
        self.froms = np.array([b["from"] if b["from"] is not None else np.iinfo(np.int64).min for b in self.bins], dtype=np.int64)
        self._held: tuple[int, pl.DataFrame] | None = None

    def _bin(self, number: int) -> pl.DataFrame:
        if self._held is None or self._held[0] != number:
            self._held = (number, pl.read_parquet(self.out / POOL_DIR / self.bins[number]["file"]))
        return self._held[1]

    def rows_before(self, times: np.ndarray) -> np.ndarray:
        """How many train rows are strictly earlier than each time."""
        which = np.searchsorted(self.froms, times, side="right") - 1
        out = np.zeros(len(times), dtype=np.int64)
        for number in np.unique(which):
            at = which == number
            bin_times = self._bin(int(number))["time"].to_numpy()
            out[at] = self.starts[number] + np.searchsorted(bin_times, times[at], side="left")
        return out

    def items(self, positions: np.ndarray) -> pl.Series:
        """The items at global positions (any order), read bin by bin."""
        which = np.searchsorted(self.starts, positions, side="right") - 1
        order = np.argsort(which, kind="stable")
        parts = []
        for number in np.unique(which):
            at = order[which[order] == number]
            parts.append((at, self._bin(int(number))["item"].gather(positions[at] - self.starts[number])))
        if not parts:
            return pl.Series("item", [], dtype=pl.Null)
        values = pl.concat([p for _, p in parts])
        back = np.empty(len(positions), dtype=np.int64)
        back[np.concatenate([a for a, _ in parts])] = np.arange(len(positions))
        return values.gather(back)


def sample_bucket(spec: DataSpec, out: Path, ub: int, buckets: int, bounds: dict[str, Any], pool: dict[str, Any], first_id: int,
                  item_side: pl.DataFrame | None, piece_rows: int = 100_000) -> int:
    """Draw, featurise-ready, and stage the sampled pairs of user bucket ``ub`` (``s-*`` files in
    its stage and, narrow, in the drawn items' item buckets); returns how many."""
    marker = out / "stage" / "_done" / f"s-{ub:05d}.json"
    if marker.is_file():
        return json.loads(marker.read_text())["rows"]
    opts = spec.transfer["sampled"]
    per_row, seed = int(opts["per_row"]), int(opts.get("seed", 0))
    files = sorted((out / "stage" / f"ub={ub:05d}").glob("c-*.parquet"))
    for stale in (out / "stage" / f"ub={ub:05d}").glob("s-*.parquet"):  # a crashed run's pieces
        stale.unlink()
    for stale in (out / "istage").glob(f"ib=*/s-{ub:05d}-*.parquet"):
        stale.unlink()
    if not files:
        write_json(marker, {"rows": 0})
        return 0
    user, item, time = spec.user, spec.item, spec.time
    labeled = pl.concat([pl.scan_parquet(f) for f in files], how="vertical_relaxed").with_columns(split_expr(spec, bounds)).filter(pl.col("__split") >= 0)
    # each (user, item)'s first rated second, over the bucket's labeled rows (all of its users' rows)
    first = labeled.group_by([user, item]).agg(pl.col(time).min().alias("__first")).collect()
    columns = pl.read_parquet_schema(files[0])
    reader = PoolReader(out, pool)
    rng = np.random.default_rng((seed, ub))
    draws = per_row * OVERSAMPLE
    total = 0
    for number, piece in enumerate(BucketPieces(spec, files, bounds, piece_rows)):
        anchors = piece.filter(pl.col("__split") == SPLIT_CODE["train"]).drop("__split")
        if anchors.height == 0:
            continue
        size = reader.rows_before(anchors[time].to_numpy())
        which = np.repeat(np.arange(anchors.height), draws)
        u = rng.random(which.size)
        has_pool = np.repeat(size, draws) > 0
        which, u = which[has_pool], u[has_pool]
        if which.size == 0:  # every row of the piece is in the log's first train second: nothing earlier to draw from
            continue
        positions = np.minimum((u * size[which]).astype(np.int64), size[which] - 1)
        cand = pl.DataFrame({"__anchor": which, "__draw": np.arange(which.size)}).with_columns(
            reader.items(positions).alias("__i"), anchors[user].gather(which).alias(user),
            anchors[time].gather(which).alias("__t"), anchors[item].gather(which).alias("__anchor_item"))
        cand = cand.join(first.rename({item: "__i"}), on=[user, "__i"], how="left", maintain_order="left")
        cand = cand.filter((pl.col("__first").is_null() | (pl.col("__first") >= pl.col("__t"))) & (pl.col("__i") != pl.col("__anchor_item")))
        cand = cand.unique(subset=["__anchor", "__i"], keep="first", maintain_order=True).sort("__draw")
        cand = cand.with_columns(pl.int_range(pl.len()).over("__anchor").alias("__j")).filter(pl.col("__j") < per_row)
        if cand.height == 0:
            continue
        pairs = anchors[cand["__anchor"].to_numpy()].with_columns(cand["__i"].alias(item))
        if item_side is not None:  # the drawn item's side-table columns replace the anchor item's
            pairs = pairs.drop([c for c in item_side.columns if c != item]).join(item_side, on=item, how="left", maintain_order="left")
        pairs = unlabel(spec, pairs.with_columns((first_id + pl.col(ORDER_TIEBREAK) * per_row + cand["__j"]).alias(ORDER_TIEBREAK)))
        # the staged rows' columns; no LM text parts (the anchor's would name another item; the LM
        # teacher reads labeled rows only)
        pairs = pairs.select([pl.col(c).cast(dtype) if c in pairs.columns and c not in PARTS.values() else pl.lit(None, dtype=dtype).alias(c)
                              for c, dtype in columns.items()])
        write_atomic(pairs, out / "stage" / f"ub={ub:05d}" / f"s-{number:05d}.parquet")
        narrow = pairs.select(user, item, time, "__label", *([spec.rating] if spec.rating else []), ORDER_TIEBREAK, CONTRIBUTES)
        narrow = narrow.with_columns(pl.lit(ub, dtype=pl.Int32).alias("__ub"), bucket_of(narrow[item], buckets).alias("__ib"))
        for (ib,), part in narrow.partition_by("__ib", as_dict=True).items():
            write_atomic(part.drop("__ib"), out / "istage" / f"ib={ib:05d}" / f"s-{ub:05d}-{number:05d}.parquet")
        total += pairs.height
    write_json(marker, {"rows": total})
    return total


def _item_side(spec: DataSpec, columns: pl.Schema, key_dtype: pl.DataType) -> pl.DataFrame | None:
    """The item side table's columns that the staged rows carry, keyed by item (None without one)."""
    side = side_tables(spec).get("items")
    if side is None:
        return None
    _, key, table = side
    keep = [c for c in table.columns if c == key or c in columns]
    if len(keep) == 1:
        return None
    return table.select(keep).with_columns(pl.col(key).cast(key_dtype))


def stage_sampled(spec: DataSpec, out: Path, buckets: int, bounds: dict[str, Any], first_id: int, options: Any,
                  run_many: Callable[..., list[Any]], log: Callable[[str], None]) -> int:
    """The pool, then every user bucket's sampled pairs (Ray tasks with ``options.num_workers`` > 1)."""
    pool = build_pool(spec, out, bounds, options.pool_bin_rows)
    staged = pl.read_parquet_schema(next((out / "stage").glob("ub=*/c-*.parquet")))
    item_side = _item_side(spec, staged, staged[spec.item])  # read once, not once per bucket
    counts = run_many(sample_bucket, [(spec, out, ub, buckets, bounds, pool, first_id, item_side, options.piece_rows) for ub in range(buckets)],
                      options.num_workers)
    total = int(sum(counts))
    log(f"prepare: sampled {total:,} transfer pairs ({spec.transfer['sampled']['per_row']} per train row, popularity as of each row's time; "
        f"pool of {pool['rows']:,} train rows in {len(pool['bins'])} time bin(s))")
    return total

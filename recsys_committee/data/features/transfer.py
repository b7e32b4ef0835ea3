"""Transfer rows: (user, item) rows without a label that distillation learns from.

Why: a teacher can be asked about far more rows than anybody labeled. Scoring pairs a user did
not rate (Ranking Distillation, Collaborative Distillation, DE-RRD) or logged impressions without
an outcome gives the student many more of its teachers' answers than the labeled rows alone.
Two sources, both declared in the data spec's ``transfer:`` section:

  * ``sampled: {per_row: N, seed: S}``: for every train row (user u, time t), N items u had not
    rated strictly before t, drawn by popularity as of t (an earlier train row picked uniformly
    at random gives its item: exactly popularity-proportional, no count table needed);
  * ``unlabeled: {interactions: FILES}``: the user's own logged rows without a label, those of
    the train period (time at most the last train row's).

What keeps them honest: they come from the train period only, and they are featurised by the
same ``featurize`` code past-only at their time while contributing nothing to anybody's past
(``CONTRIBUTES`` False): no history, no statistic of any row counts a transfer row, and no
transfer row reads a validation or test row (in a temporal split every row strictly before a
train row's time is a train row). Their label is NaN: every loss that reads a label skips them.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
import polars as pl
import torch

from recsys_committee.data.features.featurize import CONTRIBUTES
from recsys_committee.data.logs.reader import ORDER_TIEBREAK, check_rows, read_frame, side_tables
from recsys_committee.data.logs.schema import DataValidationError
from recsys_committee.data.logs.spec import DataSpec
from recsys_committee.data.features.split import Split

OVERSAMPLE = 4  # candidates drawn per wanted pair; the ones the user had rated are dropped


def transfer_rows(spec: DataSpec, rows: pl.DataFrame, split: Split, item_columns: list[str]) -> Optional[pl.DataFrame]:
    """The spec's transfer rows (None if it yields none), with ``rows``' columns plus
    ``CONTRIBUTES`` False: label NaN, rating null. ``rows`` are the labeled rows in time order;
    ``item_columns`` are the item side table's columns (they follow the sampled item)."""
    parts = []
    if "sampled" in spec.transfer:
        opts = spec.transfer["sampled"]
        parts.append(sampled_pairs(spec, rows, split.train, int(opts["per_row"]), int(opts.get("seed", 0)), item_columns))
    if "unlabeled" in spec.transfer:
        parts.append(unlabeled_rows(spec, rows, split.train))
    parts = [p for p in parts if p.height]
    if not parts:
        return None
    out = pl.concat(parts, how="vertical_relaxed")
    start = int(rows[ORDER_TIEBREAK].max()) + 1 if rows.height else 0
    # stable, unique source-row ids after the labeled rows'
    return out.with_columns(pl.Series(ORDER_TIEBREAK, np.arange(out.height, dtype=np.int64) + start))


def unlabel(spec: DataSpec, frame: pl.DataFrame) -> pl.DataFrame:
    """No outcome on a transfer row: label NaN, rating and label column null; nobody's past.
    (``prepare`` stages its transfer rows with the same.)"""
    cols = [pl.lit(float("nan"), dtype=pl.Float32).alias("__label"), pl.lit(False).alias(CONTRIBUTES)]
    if spec.rating:
        cols.append(pl.lit(None, dtype=frame[spec.rating].dtype if spec.rating in frame.columns else pl.Float64).alias(spec.rating))
    if spec.label.column in frame.columns and spec.label.column != spec.rating:
        cols.append(pl.lit(None, dtype=frame[spec.label.column].dtype).alias(spec.label.column))
    return frame.with_columns(cols)


def sampled_pairs(spec: DataSpec, rows: pl.DataFrame, train: torch.Tensor, per_row: int, seed: int, item_columns: list[str]) -> pl.DataFrame:
    """``per_row`` unrated items per train row, drawn by popularity among the train rows strictly
    before the row's time (the row's own second excluded), seeded; the row's other columns
    (user, time, context) are the anchor's, the item and its side-table columns the drawn row's."""
    if spec.time is None:
        raise DataValidationError(f"{spec.where('transfer.sampled')}: sampled pairs need columns.time")
    n = rows.height
    times = rows[spec.time].to_numpy()
    train_idx = np.sort(train.numpy())
    train_times = times[train_idx]
    # train rows strictly earlier than each train row's second: the popularity pool as of then
    pool = np.searchsorted(train_times, train_times, side="left")
    g = np.random.default_rng(seed)
    draws = per_row * OVERSAMPLE
    anchors = np.repeat(train_idx, draws)
    pool_rep = np.repeat(pool, draws)
    u = g.random(anchors.size)
    has_pool = pool_rep > 0
    picked = train_idx[np.minimum((u * pool_rep).astype(np.int64), np.maximum(pool_rep - 1, 0))]
    cand = pl.DataFrame({"__anchor": anchors[has_pool], "__from": picked[has_pool], "__draw": np.arange(anchors.size)[has_pool]})
    user, item = spec.user, spec.item
    cand = cand.with_columns(
        rows[user].gather(cand["__anchor"]).alias("__u"), rows[item].gather(cand["__from"]).alias("__i"),
        rows[item].gather(cand["__anchor"]).alias("__anchor_item"), pl.Series(times[cand["__anchor"].to_numpy()]).alias("__t"),
    )
    first = rows.group_by([user, item]).agg(pl.col(spec.time).min().alias("__first")).rename({user: "__u", item: "__i"})
    cand = cand.join(first, on=["__u", "__i"], how="left", maintain_order="left")
    # valid: the user had not rated the item strictly before the anchor's time (and it is not the anchor's own item)
    cand = cand.filter((pl.col("__first").is_null() | (pl.col("__first") >= pl.col("__t"))) & (pl.col("__i") != pl.col("__anchor_item")))
    cand = cand.unique(subset=["__anchor", "__i"], keep="first", maintain_order=True).sort("__draw")
    cand = cand.filter(pl.int_range(pl.len()).over("__anchor") < per_row)
    anchor_rows = rows[cand["__anchor"].to_numpy()]
    from_rows = rows[cand["__from"].to_numpy()]
    follow = [item, *[c for c in item_columns if c in rows.columns and c != item]]
    out = anchor_rows.with_columns([from_rows[c].alias(c) for c in follow])
    return unlabel(spec, out)


def unlabeled_rows(spec: DataSpec, rows: pl.DataFrame, train: torch.Tensor) -> pl.DataFrame:
    """The ``unlabeled`` files' rows of the train period (time at most the last train row's),
    checked and typed like the labeled rows (no label column needed), in time order."""
    path = spec.transfer["unlabeled"]["interactions"]
    raw = read_frame(path, spec.separator)
    raw = raw.with_row_index(ORDER_TIEBREAK).with_columns(pl.col(ORDER_TIEBREAK).cast(pl.Int64))
    checked = check_rows(raw, dataclasses.replace(spec, interactions=path, rating=None), side_tables(spec), require_label=False)  # errors name this file; no outcome columns needed
    if spec.time is None:
        raise DataValidationError(f"{spec.where('transfer.unlabeled')}: unlabeled rows need columns.time")
    last_train = rows[spec.time].gather(pl.Series(train.numpy())).max()
    checked = checked.filter(pl.col(spec.time) <= last_train)
    missing = [c for c in rows.columns if c not in checked.columns]
    for c in missing:  # columns the labeled rows carry and these do not (label, rating): null
        checked = checked.with_columns(pl.lit(None, dtype=rows[c].dtype).alias(c))
    checked = checked.select(rows.columns).sort([c for c in (spec.time, spec.user, spec.item) if c], maintain_order=True)
    return unlabel(spec, checked)


def with_contributes(rows: pl.DataFrame, transfer: Optional[pl.DataFrame]) -> pl.DataFrame:
    """Labeled rows (contributing, source 0) followed by the transfer rows: the labeled rows keep
    their positions (their example ids, hence every teacher cache keyed by them, are unchanged)."""
    if transfer is None:
        return rows
    labeled = rows.with_columns(pl.lit(True).alias(CONTRIBUTES))
    return pl.concat([labeled, transfer.select(labeled.columns)], how="vertical_relaxed")

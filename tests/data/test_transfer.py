"""Transfer rows: sampled (user, item) pairs and unlabeled logs, featurised past-only at their
time, from the train period only, and nobody's past."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from recsys_committee.data.features.loading import load_spec_data
from recsys_committee.data.logs.movielens import MOVIELENS_SPEC
from recsys_committee.data.logs.spec import DataSpecError, load_spec

ROWS = 6_000  # the first rows in time: a real slice, 4,800 of them train


def _slice(real_data_dir: Path, target: Path, flip_after: int | None = None) -> Path:
    """The first ROWS ratings of ML-100K in time (with the side tables) under ``target``; with
    ``flip_after``, every later row's rating becomes 6 - rating (its label flips)."""
    target.mkdir(parents=True, exist_ok=True)
    for side in ("ml-100k.user", "ml-100k.item"):
        shutil.copy(real_data_dir / side, target / side)
    inter = pl.read_csv(real_data_dir / "ml-100k.inter", separator="\t")
    rating, time = "rating:float", "timestamp:float"
    inter = inter.with_row_index("__i").sort([time, "user_id:token", "item_id:token", "__i"]).head(ROWS).drop("__i")
    if flip_after is not None:
        flipped = pl.when(pl.int_range(pl.len()) >= flip_after).then(6 - pl.col(rating)).otherwise(pl.col(rating))
        inter = inter.with_columns(flipped.alias(rating))
    inter.write_csv(target / "ml-100k.inter", separator="\t")
    return target


def _spec(root: Path, transfer: dict):
    spec = load_spec(MOVIELENS_SPEC, {"transfer": transfer})
    spec.interactions, spec.users, spec.items = (str(root / f"ml-100k.{s}") for s in ("inter", "user", "item"))
    return spec


@pytest.fixture(scope="module")
def sliced(real_data_dir, tmp_path_factory):
    root = _slice(real_data_dir, tmp_path_factory.mktemp("ml_slice"))
    with_transfer = load_spec_data(_spec(root, {"sampled": {"per_row": 2, "seed": 3}}))
    plain = load_spec_data(_spec(root, {}))
    return root, with_transfer, plain


def test_labeled_rows_unchanged_by_transfer_rows(sliced):
    """Transfer rows are nobody's past: every labeled row's features (statistics, histories)
    are exactly those of the same data without them."""
    _, data, plain = sliced
    n = plain.table.num_rows
    assert data.transfer is not None and len(data.transfer) > ROWS  # close to 2 per train row
    assert data.table.frame.head(n).equals(plain.table.frame)
    for name, (values, offsets) in plain.table.jagged.items():
        v, o = data.table.jagged[name]
        assert torch.equal(o[: n + 1], offsets) and torch.equal(v[: int(offsets[-1])], values), name


def test_data_loaded_without_its_transfer_rows_is_the_data_of_a_spec_without_them(sliced):
    """``transfer=False`` (a run that never reads them) builds none; the spec keeps its section."""
    root, _, plain = sliced
    skipped = load_spec_data(_spec(root, {"sampled": {"per_row": 2, "seed": 3}}), transfer=False)
    assert skipped.transfer is None and skipped.spec.transfer
    assert skipped.table.frame.equals(plain.table.frame)


def test_transfer_rows_are_past_only_unrated_pairs_of_the_train_period(sliced):
    _, data, plain = sliced
    frame = data.table.frame
    labeled = frame.head(plain.table.num_rows)
    transfer = frame[data.transfer.index.numpy()]
    assert torch.isnan(data.transfer.labels).all() and not torch.isnan(data.train.labels).any()
    last_train = labeled["timestamp"][int(data.split.train[-1])]
    assert transfer["timestamp"].max() <= last_train
    # each pair: a train row's user at that row's time, and an item the user had not rated before then
    train = labeled[data.split.train.numpy()]
    anchors = train.select("user_id", "timestamp").unique()
    assert transfer.join(anchors, on=["user_id", "timestamp"], how="anti").height == 0
    first = labeled.group_by("user_id", "item_id").agg(pl.col("timestamp").min().alias("first"))
    seen = transfer.join(first, on=["user_id", "item_id"], how="left")
    assert seen.filter(pl.col("first") < pl.col("timestamp")).height == 0
    # user-side features are the anchor's (same user, same second: the same past)
    user_cols = [c for c in frame.columns if c.startswith("user_prev_")]
    anchor_stats = train.select("user_id", "timestamp", *user_cols).unique(subset=["user_id", "timestamp"])
    joined = transfer.select("user_id", "timestamp", *user_cols).join(anchor_stats, on=["user_id", "timestamp"], suffix="_a")
    for c in user_cols:
        assert np.allclose(joined[c].to_numpy(), joined[f"{c}_a"].to_numpy())


def test_transfer_rows_read_no_validation_or_test_row(real_data_dir, sliced, tmp_path):
    """Flipping every validation and test rating changes no transfer row: neither which pairs
    are drawn nor any of their features."""
    _, data, plain = sliced
    n_train = int(data.split.train.numel())
    flipped_root = _slice(real_data_dir, tmp_path / "flipped", flip_after=n_train)
    flipped = load_spec_data(_spec(flipped_root, {"sampled": {"per_row": 2, "seed": 3}}))
    assert not flipped.test.labels.equal(data.test.labels)  # the flip did reach the held-out rows
    a, b = data.table.frame[data.transfer.index.numpy()], flipped.table.frame[flipped.transfer.index.numpy()]
    assert a.drop("example_id").equals(b.drop("example_id"))
    for name in data.table.jagged:
        va, la = data.transfer.jagged[name]
        vb, lb = flipped.transfer.jagged[name]
        assert torch.equal(va, vb) and torch.equal(la, lb), name


def test_unlabeled_logs_keep_the_train_period(sliced, tmp_path):
    root, data, _ = sliced
    inter = pl.read_csv(root / "ml-100k.inter", separator="\t").drop("rating:float")
    inter.write_csv(tmp_path / "impressions.inter", separator="\t")
    got = load_spec_data(_spec(root, {"unlabeled": {"interactions": str(tmp_path / "impressions.inter")}}))
    times = got.table.frame["timestamp"]
    last_train = times[int(got.split.train[-1])]
    transfer_times = times.gather(pl.Series(got.transfer.index.numpy()))
    assert transfer_times.max() <= last_train
    assert len(got.transfer) >= len(got.train)  # every train-period impression (ties at the boundary included)
    assert torch.isnan(got.transfer.labels).all()


def test_with_transfer_mixes_rows_and_refuses_without_them(sliced):
    _, data, plain = sliced
    mixed = data.with_transfer()
    assert len(mixed.train) == len(data.train) + len(data.transfer) and len(mixed.val) == len(data.val)
    with pytest.raises(Exception, match="no transfer rows"):
        plain.with_transfer()


@pytest.mark.parametrize("transfer, needle", [
    ({"sampled": {"per_row": 0}}, "per_row must be a positive integer"),
    ({"sampled": {"per_rows": 2}}, "unknown data-spec key 'transfer.sampled.per_rows'"),
    ({"unlabeled": {}}, "transfer.unlabeled needs 'interactions'"),
    ({"sampeld": {}}, "Did you mean 'transfer.sampled'"),
])
def test_bad_transfer_section(transfer, needle):
    with pytest.raises(DataSpecError, match=needle):
        load_spec(MOVIELENS_SPEC, {"transfer": transfer})

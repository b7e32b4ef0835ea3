"""MovieLens as three RecDatasets (train/val/test), plus the facts models are sized from.

Why one entry point: every command (train, distill, cache, benchmarks) must see exactly the
same rows, features and normalisation, so they all come through ``load_movielens``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from recsys_committee.data.batching import RecDataset
from recsys_committee.data.features import FeatureTable, build_features
from recsys_committee.data.schema import RawTables, read_movielens
from recsys_committee.data.split import Split, temporal_split


@dataclass
class RecData:
    table: FeatureTable
    split: Split
    train: RecDataset
    val: RecDataset
    test: RecDataset
    raw: RawTables | None = None  # the validated tables (the LM teacher's texts read titles and profiles)
    spec: Any = None  # the DataSpec it was read with (None: the built-in MovieLens reader)
    vocab: Any = None  # the spec's Vocabularies (train split), saved with every model for scoring
    dense_stats: Any = None  # (mean, std) of the dense features on the train split

    @property
    def cardinalities(self) -> dict[str, int]:
        return self.table.cardinalities

    @property
    def num_dense(self) -> int:
        return len(self.table.dense_names)

    def dataset(self, name: str) -> RecDataset:
        return {"train": self.train, "val": self.val, "test": self.test}[name]

    def warm_users(self) -> torch.Tensor:
        """Users with at least one training row (the rest of val/test users are cold)."""
        return torch.unique(self.train.users)


def load_movielens(
    root: str | Path = "data/ml-100k",
    name: str = "ml-100k",
    history_len: int = 20,
    long_history_len: int = 50,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    max_rows: int | None = None,
) -> RecData:
    """``max_rows`` keeps the first rows in time (a real-data slice for tests)."""
    raw = read_movielens(root, name)
    if max_rows is not None:
        raw.inter = raw.inter.sort("timestamp").head(max_rows)
    table = build_features(raw, history_len=history_len, long_history_len=long_history_len)
    split = temporal_split(table.num_rows, fractions)
    dense_all = torch.from_numpy(table.frame.select(table.dense_names).to_numpy()).float()
    mean = dense_all[split.train].mean(0)
    std = dense_all[split.train].std(0).clamp_min(1e-6)
    datasets = {name: RecDataset(table, split[name], mean, std) for name in ("train", "val", "test")}
    return RecData(table=table, split=split, raw=raw, **datasets)

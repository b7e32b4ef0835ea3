"""A data spec -> the run's data (``RecData``: three RecDatasets and the facts models are sized from).

Why one entry point: every command (train, distill, cache, score, benchmarks) must see exactly
the same rows, features, vocabularies and normalisation, so they all come through here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import polars as pl
import torch

from recsys_committee.data.model_input.batching import RecDataset
from recsys_committee.data.features.table import FeatureTable
from recsys_committee.data.features.featurize import build_spec_features
from recsys_committee.data.model_input.layout import RunDataFacts
from recsys_committee.data.logs.reader import read_rows, side_table
from recsys_committee.data.logs.schema import DataValidationError, RawTables
from recsys_committee.data.logs.spec import DataSpec
from recsys_committee.data.features.split import Split
from recsys_committee.data.features.transfer import transfer_rows, with_contributes


@dataclass
class RecData(RunDataFacts):
    table: FeatureTable
    split: Split
    train: RecDataset
    val: RecDataset
    test: RecDataset
    raw: RawTables | None = None  # the validated tables (the LM teacher's texts read titles and profiles)
    spec: Any = None  # the DataSpec it was read with (None: the built-in MovieLens reader)
    vocab: Any = None  # the spec's Vocabularies (train split), saved with every model for scoring
    dense_stats: Any = None  # (mean, std) of the dense features on the train split

    transfer: RecDataset | None = None  # rows without a label for distillation (the spec's ``transfer:``), None if it has none

    def with_transfer(self) -> "RecData":
        """The same data whose train split also holds the transfer rows (shuffled in with the
        labeled ones): what a distillation run with ``committee.transfer`` trains on."""
        if self.transfer is None or len(self.transfer) == 0:
            raise DataValidationError("committee.transfer is on but the data has no transfer rows: declare them in the data spec's "
                                      "'transfer:' section (e.g. transfer: {sampled: {per_row: 2}})")
        index = torch.cat([self.train.index, self.transfer.index])
        mean, std = self.dense_stats
        return dataclasses.replace(self, train=RecDataset(self.table, index, mean, std))

    def warm_users(self) -> torch.Tensor:
        """Users with at least one training row (the rest of val/test users are cold)."""
        return torch.unique(self.train.users)



def load_spec_data(spec: DataSpec, transfer: bool = True) -> RecData:
    """Read, join and check the spec's tables, build the features and split them; dense
    features are standardised with the train split's mean and std. ``transfer=False`` builds
    no transfer rows (a run that never reads them; the labeled rows come out the same)."""
    rows = read_rows(spec)
    users, items = side_table(spec.users, spec), side_table(spec.items, spec)
    extend = None
    if spec.transfer and transfer:
        item_columns = list(items.columns) if items is not None else []
        extend = lambda labeled, split: with_contributes(labeled, transfer_rows(spec, labeled, split, item_columns))  # noqa: E731
    table, split, vocab = build_spec_features(spec, rows, extend)
    if table.dense_names:
        dense_all = torch.from_numpy(table.frame.select(table.dense_names).to_numpy().copy()).float()
        mean = dense_all[split.train].mean(0)
        std = dense_all[split.train].std(0).clamp_min(1e-6)
    else:
        mean = std = torch.zeros(0)
    datasets = {name: RecDataset(table, split[name], mean, std) for name in ("train", "val", "test")}
    raw = RawTables(rows, *keyed_side_tables(spec, users, items))
    transfer = RecDataset(table, torch.arange(rows.height, table.num_rows), mean, std) if table.num_rows > rows.height else None
    return RecData(table=table, split=split, raw=raw, spec=spec, vocab=vocab, dense_stats=(mean, std), transfer=transfer, **datasets)


def keyed_side_tables(spec: DataSpec, users: pl.DataFrame | None, items: pl.DataFrame | None) -> tuple[pl.DataFrame | None, pl.DataFrame | None]:
    """The side tables as the LM teacher's MovieLens texts read them: with ``ids: raw`` their
    keys are the features' ids too (``user_id`` / ``item_id``), which the texts join on."""
    if spec.ids == "raw":
        users = users.with_columns(pl.col(spec.user).cast(pl.Int64).alias("user_id")) if users is not None else None
        items = items.with_columns(pl.col(spec.item).cast(pl.Int64).alias("item_id")) if items is not None else None
    return users, items

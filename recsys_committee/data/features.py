"""The feature table every model reads, and the past-only history builder.

Why these two here: the featuriser (``featurize.py``) fills a ``FeatureTable`` from a data
spec; ``user_histories`` is the vectorised "last N items strictly before the row's time" that
every history feature is cut from, so nothing leaks from the future, including rows logged in
the same second.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl
import torch

from recsys_committee.data.jagged import gather_ranges
from recsys_committee.data.layout import FeatureLayout


@dataclass
class FeatureTable:
    """All rows in time order: scalar columns in ``frame``, jagged ones as (values, offsets)."""

    frame: pl.DataFrame
    jagged: dict[str, tuple[torch.Tensor, torch.Tensor]]
    cardinalities: dict[str, int]  # feature -> embedding rows (id 0 is padding / unknown)
    dense_names: list[str] = field(default_factory=list)
    layout: FeatureLayout = field(default_factory=lambda: FeatureLayout(student=[]))  # which model reads what

    @property
    def num_rows(self) -> int:
        return self.frame.height


def user_histories(
    user: torch.Tensor, timestamp: torch.Tensor, item: torch.Tensor, rating: torch.Tensor, window: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For rows sorted by (user, timestamp): the last ``window`` items the user rated strictly
    before the row's timestamp -> (item values, rating values, lengths)."""
    n = user.numel()
    idx = torch.arange(n)
    new_user = torch.ones(n, dtype=torch.bool)
    new_user[1:] = user[1:] != user[:-1]
    new_second = new_user.clone()
    new_second[1:] |= timestamp[1:] != timestamp[:-1]
    user_start = torch.cummax(torch.where(new_user, idx, 0), 0).values
    second_start = torch.cummax(torch.where(new_second, idx, 0), 0).values  # first row of this (user, second)
    start = torch.maximum(user_start, second_start - window)
    lengths = second_start - start
    return gather_ranges(item, start, lengths), gather_ranges(rating, start, lengths), lengths

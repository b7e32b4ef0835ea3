"""The feature table every model reads, and the past-only history builder.

Why these two here: the featuriser (``featurize.py``) fills a ``FeatureTable`` from a data
spec; ``user_histories`` is the vectorised "last N items strictly before the row's time" that
every history feature is cut from, so nothing leaks from the future, including rows logged in
the same second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import polars as pl
import torch

from recsys_committee.data.features.jagged import gather_ranges
from recsys_committee.data.model_input.layout import FeatureLayout


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
    user: torch.Tensor, timestamp: torch.Tensor, item: torch.Tensor, rating: torch.Tensor, window: int,
    contributes: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For rows sorted by (user, timestamp): the last ``window`` items the user rated strictly
    before the row's timestamp -> (item values, rating values, lengths).

    ``contributes`` (bool per row; default all) marks the rows that enter histories. Rows that
    do not (transfer rows: pairs nobody logged) still get their own history, cut from the
    contributing rows only, so a sampled pair never shows up in any row's past."""
    if contributes is not None and not bool(contributes.all()):
        return _histories_of_contributors(user, timestamp, item, rating, window, contributes)
    user_start, second_start = _group_starts(user, timestamp)
    start = torch.maximum(user_start, second_start - window)
    lengths = second_start - start
    return gather_ranges(item, start, lengths), gather_ranges(rating, start, lengths), lengths


def _histories_of_contributors(
    user: torch.Tensor, timestamp: torch.Tensor, item: torch.Tensor, rating: torch.Tensor, window: int, contributes: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``user_histories`` where only ``contributes`` rows are history: each row's (user, second)
    boundaries are counted in contributing rows (an exclusive cumulative count), and the ranges
    are cut from the contributing rows' items."""
    user_start, second_start = _group_starts(user, timestamp)
    before = torch.zeros(user.numel() + 1, dtype=torch.long)  # contributing rows before each position
    torch.cumsum(contributes.long(), 0, out=before[1:])
    user_start_c, second_start_c = before[user_start], before[second_start]
    start = torch.maximum(user_start_c, second_start_c - window)
    lengths = second_start_c - start
    return gather_ranges(item[contributes], start, lengths), gather_ranges(rating[contributes], start, lengths), lengths


def _group_starts(user: torch.Tensor, timestamp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For rows sorted by (user, timestamp): the position of each row's user's first row and of
    its (user, second)'s first row."""
    n = user.numel()
    idx = torch.arange(n)
    new_user = torch.ones(n, dtype=torch.bool)
    new_user[1:] = user[1:] != user[:-1]
    new_second = new_user.clone()
    new_second[1:] |= timestamp[1:] != timestamp[:-1]
    user_start = torch.cummax(torch.where(new_user, idx, 0), 0).values
    second_start = torch.cummax(torch.where(new_second, idx, 0), 0).values
    return user_start, second_start

"""Global temporal split: the first 80% of rows in time are train, then 10% val, 10% test.

Why global, not per user: it is the only split where a model never sees the future, which is
how a recommender is deployed. Its price is that most test users are new (cold); we report
warm and cold users apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Split:
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor

    def __getitem__(self, name: str) -> torch.Tensor:
        return {"train": self.train, "val": self.val, "test": self.test}[name]


def temporal_split(num_rows: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> Split:
    """Row ranges of a table already sorted by timestamp."""
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be three positive numbers summing to 1, got {fractions}")
    n_train = int(round(num_rows * fractions[0]))
    n_val = int(round(num_rows * fractions[1]))
    idx = torch.arange(num_rows)
    return Split(train=idx[:n_train], val=idx[n_train : n_train + n_val], test=idx[n_train + n_val :])

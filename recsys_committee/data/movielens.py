"""The run's data (``RecData``: three RecDatasets and the facts models are sized from), and the
fetched MovieLens-100K read through its data spec, ``configs/data/ml-100k.yaml``.

Why MovieLens is only a spec here: the reader and featuriser know no dataset; this module only
says where the fetched files are (``root``/``name``, so test fixtures and synthetic data in the
same shape reuse the spec).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from recsys_committee.data.batching import RecDataset
from recsys_committee.data.features import FeatureTable
from recsys_committee.data.schema import RawTables
from recsys_committee.data.split import Split


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


MOVIELENS_SPEC = Path(__file__).resolve().parents[2] / "configs" / "data" / "ml-100k.yaml"
SPEC_ROOT, SPEC_NAME = "data/ml-100k", "ml-100k"


def movielens_spec(root: str | Path = SPEC_ROOT, name: str = SPEC_NAME, history_len: Optional[int] = None,
                   long_history_len: Optional[int] = None, fractions: Optional[tuple] = None, max_rows: Optional[int] = None) -> Any:
    """The MovieLens spec, its files taken from ``root`` as ``<name>.{inter,user,item}`` (a
    ``.parquet`` sibling is preferred when present), with optional history lengths, split and row cap."""
    from recsys_committee.data.spec import load_spec

    spec = load_spec(MOVIELENS_SPEC)
    if Path(root) != Path(SPEC_ROOT) or name != SPEC_NAME:
        def move(path: str) -> str:
            target = Path(root) / Path(path).name.replace(SPEC_NAME, name, 1)
            parquet = target.with_name(target.name + ".parquet")
            return str(parquet if parquet.exists() else target)

        spec.interactions, spec.users, spec.items = move(spec.interactions), move(spec.users), move(spec.items)
    for key, value in (("history", history_len), ("history_long", long_history_len)):
        if value is not None:
            spec.derived[key] = {**spec.derived[key], "length": value}
    if fractions is not None:
        spec.fractions = list(fractions)
    if max_rows is not None:
        spec.max_rows = max_rows
    return spec


def load_movielens(root: str | Path = SPEC_ROOT, name: str = SPEC_NAME, history_len: Optional[int] = None, long_history_len: Optional[int] = None,
                   fractions: Optional[tuple] = None, max_rows: Optional[int] = None) -> RecData:
    """MovieLens (or a fixture in its shape) read through its data spec."""
    from recsys_committee.data.loading import load_spec_data

    return load_spec_data(movielens_spec(root, name, history_len, long_history_len, fractions, max_rows))

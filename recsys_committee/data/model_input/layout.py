"""Which features each model reads, and which share an embedding table.

Why it travels with the data and with every model file: models never name a column; they take
their feature lists from the layout the data spec produced, and a saved model rebuilds from the
layout stored next to its weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

ITEM_TABLE = "t_item"  # the candidate item and every item history look up one table


@dataclass
class FeatureLayout:
    """Which features each model reads, and which share an embedding table. Why it travels with
    the data and the model files: models never name a column; a saved model rebuilds from this."""

    student: list[str]
    expert_extra: list[str] = field(default_factory=list)  # longer / liked / disliked histories
    sequence: list[str] = field(default_factory=list)  # [item_id, history_long(, history_long_rating)] for target attention
    tables: dict[str, str] = field(default_factory=dict)  # feature -> table (the item table is shared)
    scalar: list[str] = field(default_factory=list)  # one id per row
    dropped: dict[str, list[str]] = field(default_factory=dict)  # what a model wanted but the data lacks

    def table_of(self, feature: str) -> str:
        return self.tables.get(feature, f"t_{feature}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FeatureLayout":
        return cls(**d)


class RunDataFacts:
    """What models and the runner read of a run's data, whichever path it came by (in memory:
    ``RecData``; streamed: ``PreparedData``): needs ``table`` (layout, dense names,
    cardinalities) and ``train`` / ``val`` / ``test``."""

    @property
    def cardinalities(self) -> dict[str, int]:
        return self.table.cardinalities  # type: ignore[attr-defined]

    @property
    def num_dense(self) -> int:
        return len(self.table.dense_names)  # type: ignore[attr-defined]

    def dataset(self, name: str) -> Any:
        if name == "transfer" and getattr(self, "transfer", None) is not None:  # rows without a label, where the data has them
            return self.transfer  # type: ignore[attr-defined]
        return {"train": self.train, "val": self.val, "test": self.test}[name]  # type: ignore[attr-defined]

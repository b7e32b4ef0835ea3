"""The run's data (``RecData``: three RecDatasets and the facts models are sized from), and the
fetched MovieLens-100K read through its data spec, ``configs/data/ml-100k.yaml``.

Why MovieLens is only a spec here: the reader and featuriser know no dataset; this module only
says where the fetched files are (``root``/``name``, so test fixtures and synthetic data in the
same shape reuse the spec).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional


from recsys_committee.data.features.loading import RecData, load_spec_data


MOVIELENS_SPEC = Path(__file__).resolve().parents[3] / "configs" / "data" / "ml-100k.yaml"
SPEC_ROOT, SPEC_NAME = "data/ml-100k", "ml-100k"


def movielens_spec(root: str | Path = SPEC_ROOT, name: str = SPEC_NAME, history_len: Optional[int] = None,
                   long_history_len: Optional[int] = None, fractions: Optional[tuple] = None, max_rows: Optional[int] = None) -> Any:
    """The MovieLens spec, its files taken from ``root`` as ``<name>.{inter,user,item}`` (a
    ``.parquet`` sibling is preferred when present), with optional history lengths, split and row cap."""
    from recsys_committee.data.logs.spec import load_spec

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
                   fractions: Optional[tuple] = None, max_rows: Optional[int] = None, transfer: bool = False) -> RecData:
    """MovieLens (or a fixture in its shape) read through its data spec; its transfer rows only
    with ``transfer`` (they double the featurising and triple a distillation epoch, which the
    fixtures built on this do not need)."""
    spec = movielens_spec(root, name, history_len, long_history_len, fractions, max_rows)
    if not transfer:
        spec.transfer = {}
    return load_spec_data(spec)

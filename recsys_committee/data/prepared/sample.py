"""A seeded sample of a prepared dataset, held in memory (``data.sample_rows``).

Why: some models are trained on a sample of a log too large to hold, then run over all of it. The
LM teacher is the one here: its top layers are fine-tuned on a sample of the train split (with a
token cache of that sample only: ~49 KB a row would be 490 GB at 10M rows), then its outputs are
computed over every shard with the whole encoder (``cache --data DATASET_DIR``). The sample is
an ordinary in-memory ``RecData`` (rows numbered 0..N-1, train then val then test), so the
in-memory training path runs on it unchanged, and it renders its rows' LM texts from the shards
(``texts.py``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np
import polars as pl
import pyarrow as pa
import torch

from recsys_committee.data.features.loading import RecData
from recsys_committee.data.features.split import Split
from recsys_committee.data.features.table import FeatureTable
from recsys_committee.data.logs.schema import DataValidationError
from recsys_committee.data.model_input.batching import RecDataset
from recsys_committee.data.prepared.texts import PARTS, PreparedTexts, arrow_jagged

SPLITS = ("train", "val", "test")


@dataclasses.dataclass
class SampledData(RecData):
    """A prepared dataset's sample in memory; ``rows`` keeps its shard rows for the LM's texts."""

    prepared: Any = None  # the PreparedData it was drawn from
    rows: Optional[pa.Table] = None  # the sampled shard rows, in table order

    def render_lm_texts(self, options: Any) -> list[str]:
        """The LM teacher's text of every row, as ``cache --data`` renders them over the shards."""
        return PreparedTexts(self.prepared.root, self.prepared.manifest, options).render(self.rows)


def sample_prepared(data: Any, rows: int, seed: int = 0) -> SampledData:
    """``rows`` train rows drawn uniformly without replacement (seeded), and val / test rows in
    the same proportion of their splits, each split's rows in manifest order."""
    if rows <= 0:
        raise DataValidationError(f"data.sample_rows must be > 0, got {rows}")
    rng = np.random.default_rng(seed)
    share = min(1.0, rows / max(len(data.train), 1))
    tables, sizes = [], []
    for name in SPLITS:
        split = data.dataset(name)
        n = len(split)
        want = min(n, rows) if name == "train" else max(1, int(round(n * share)))
        positions = np.sort(rng.choice(n, size=want, replace=False)) if want < n else np.arange(n)
        tables.append(split.take_rows(positions, every_column=True))
        sizes.append(want)
    shard_rows = pa.concat_tables(tables, promote_options="default")
    jagged_names = list(data.train.jagged)
    scalar = [c for c in shard_rows.column_names if c not in jagged_names and c not in PARTS.values()]
    frame = pl.from_arrow(shard_rows.select(scalar)).with_columns(pl.Series("example_id", np.arange(shard_rows.num_rows, dtype=np.int64)))
    table = FeatureTable(frame=frame, jagged={n: arrow_jagged(shard_rows, n) for n in jagged_names}, cardinalities=dict(data.table.cardinalities),
                         dense_names=list(data.table.dense_names), layout=data.table.layout)
    bounds = np.cumsum([0] + sizes)
    split = Split(*(torch.arange(int(bounds[i]), int(bounds[i + 1])) for i in range(3)))
    mean, std = data.dense_stats
    datasets = {name: RecDataset(table, split[name], mean, std) for name in SPLITS}
    return SampledData(table=table, split=split, raw=None, spec=data.spec, vocab=data.vocab, dense_stats=(mean, std), prepared=data,
                       rows=shard_rows, **datasets)

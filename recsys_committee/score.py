"""``recsys-committee score``: a trained model scores raw rows.

Why it needs nothing but the model directory: the directory holds the weights, the data spec,
the vocabularies and the dense normalisation (``data/model_input/model_data.py``), so rows with the training
data's columns are featurised exactly as in training: ids through the saved vocabularies (an
unseen id is the out-of-vocabulary id, counted per feature in the report), dense columns with
the train split's statistics, histories and past statistics from the rows given (``--history``
adds earlier rows whose items and outcomes form those pasts; they are not scored). ``--split
test`` scores that split of the spec's own data instead, which reproduces metrics.json.
``--model`` may also be an artifact folder written by ``export``: its program scores the rows
(featurised with the data facts the artifact carries), as a server running it would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import polars as pl
import torch

from recsys_committee.data.model_input.batching import RecDataset
from recsys_committee.data.features.featurize import featurize, split_rows
from recsys_committee.data.model_input.model_data import load_data_facts, model_file
from recsys_committee.data.logs.reader import read_rows
from recsys_committee.data.logs.schema import DataValidationError
from recsys_committee.metrics import binary_metrics


def run_score(model_dir: Path, out: Path, input_path: Optional[str] = None, history_path: Optional[str] = None, split: Optional[str] = None,
              batch_size: int = 8192) -> dict[str, Any]:
    spec, vocab, mean, std = load_data_facts(model_dir)
    if split is not None:
        rows = read_rows(spec)
        table = featurize(spec, rows, vocab)  # the saved vocabularies, not refitted ones
        index = split_rows(spec, rows.height)[split]
        scored = rows[index.numpy()]
    else:
        if input_path is None:
            raise DataValidationError("score needs --input ROWS (or --split train|val|test)")
        scored_spec = _with_source(spec, input_path)
        given = read_rows(scored_spec, require_label=False).with_columns(pl.lit(True).alias("__scored"))
        if history_path is not None:
            past = read_rows(_with_source(spec, history_path), require_label=False).with_columns(pl.lit(False).alias("__scored"))
            given = pl.concat([past, given], how="diagonal_relaxed").sort([c for c in (spec.time, spec.user, spec.item) if c], maintain_order=True)
        table = featurize(spec, given, vocab)
        mask = given["__scored"].to_numpy()
        index = torch.from_numpy(mask.nonzero()[0])
        scored = given.filter(pl.col("__scored")).drop("__scored")
    dataset = RecDataset(table, index, mean, std)
    probs = _scorer(model_dir, table)(dataset, batch_size)
    unseen = {name: int((dataset.scalars[name] == 0).sum()) for name in table.layout.scalar if name in dataset.scalars}
    keep = [c for c in scored.columns if not c.startswith("__")]
    out.parent.mkdir(parents=True, exist_ok=True)
    scored.select(keep).with_columns(pl.Series("score", probs.numpy())).write_parquet(out)
    report: dict[str, Any] = {"rows": int(index.numel()), "out": str(out), "unseen_ids": unseen}
    has_label = spec.label.column in scored.columns
    if has_label and dataset.labels.unique().numel() == 2:
        report["metrics"] = binary_metrics(probs, dataset.labels, dataset.users)
    return report


def _scorer(model_dir: Path, table: Any) -> Callable[[RecDataset, int], torch.Tensor]:
    """Probabilities for a dataset: an export artifact's program, or the model directory's model
    (refused when its file was trained on another layout than ``table``, the rows featurised
    with the directory's data facts)."""
    from recsys_committee.serve.artifact import is_artifact, load_artifact

    if is_artifact(model_dir):
        return load_artifact(model_dir).predict
    from recsys_committee.rec_domain import load_trained_model, predict

    model = load_trained_model(model_file(model_dir), table).eval()
    return lambda dataset, batch_size: predict(model, dataset, batch_size)


def _with_source(spec: Any, path: str) -> Any:
    """The spec reading ``path`` as its interactions (side tables, columns and features unchanged)."""
    import dataclasses

    return dataclasses.replace(spec, interactions=str(Path(path).resolve()), max_rows=None)

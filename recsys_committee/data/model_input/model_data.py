"""What a model directory keeps of its data, so it scores raw rows on its own.

Why: a model's ids mean something only with the vocabularies it was trained with, and its dense
inputs only with the train split's mean and std. ``train``/``distill`` write them as JSON next
to the weights (``data_spec.json``, ``features.json``); ``score`` reads them back and featurises
new rows exactly as training did: no pickle, nothing recomputed from other data.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from recsys_committee.data.features.featurize import Vocabularies
from recsys_committee.data.logs.schema import DataValidationError
from recsys_committee.data.logs.spec import CategoricalSpec, DataSpec, LabelSpec, MultiValuedSpec

SPEC_FILE = "data_spec.json"
FEATURES_FILE = "features.json"
MODEL_FILES = ("student.safetensors", "model.safetensors", "student.pt", "model.pt")  # distill's first: its student is the model served


def model_file(model_dir: Path) -> Path:
    """The model file of a train/distill output directory."""
    for name in MODEL_FILES:
        if (model_dir / name).is_file():
            return model_dir / name
    raise DataValidationError(f"{model_dir}: no model file ({', '.join(MODEL_FILES)}): not a train/distill output directory")


def save_data_facts(out: Path, data: Any) -> None:
    """Write the spec, vocabularies, dense normalisation and layout of ``data`` (a RecData read
    through a spec; the built-in MovieLens reader has none and writes nothing)."""
    if getattr(data, "spec", None) is None or data.vocab is None:
        return
    mean, std = data.dense_stats
    (out / SPEC_FILE).write_text(json.dumps(dataclasses.asdict(data.spec), indent=2))
    facts = {
        "vocabularies": data.vocab.as_dict(),
        "dense_names": list(data.table.dense_names),
        "dense_mean": [float(v) for v in mean],
        "dense_std": [float(v) for v in std],
        "layout": data.table.layout.as_dict(),
        "cardinalities": data.table.cardinalities,
    }
    (out / FEATURES_FILE).write_text(json.dumps(facts, indent=2))


def spec_from_dict(d: dict[str, Any]) -> DataSpec:
    d = dict(d)
    d["label"] = LabelSpec(**d["label"])
    d["categorical"] = [CategoricalSpec(**c) for c in d["categorical"]]
    d["multi_valued"] = [MultiValuedSpec(**m) for m in d["multi_valued"]]
    return DataSpec(**d)


def load_data_facts(model_dir: Path) -> tuple[DataSpec, Vocabularies, torch.Tensor, torch.Tensor]:
    spec_path, facts_path = model_dir / SPEC_FILE, model_dir / FEATURES_FILE
    for path in (spec_path, facts_path):
        if not path.is_file():
            raise DataValidationError(f"{path}: not found: {model_dir} is not a model directory written by train/distill from a data spec")
    try:
        spec = spec_from_dict(json.loads(spec_path.read_text()))
        facts = json.loads(facts_path.read_text())
        vocab = Vocabularies(**facts["vocabularies"])
        mean, std = torch.tensor(facts["dense_mean"]), torch.tensor(facts["dense_std"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DataValidationError(f"{model_dir}: {SPEC_FILE} / {FEATURES_FILE} are corrupt ({type(exc).__name__}: {exc})") from exc
    return spec, vocab, mean, std

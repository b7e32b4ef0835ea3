"""Models saved by ``train`` / ``distill``, rebuilt from their files, and as frozen teachers.

Why its own module: the domain, the streamed teacher caches, ``score`` and export all rebuild a
trained model from its file (registry name + params + cardinalities + layout in the file, so no
config is needed); none of them should import the others to do it. A file trained on data of
another layout than the run's is refused here, by name (``check_trained_on``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import torch
from torch import nn

from recsys_committee.data.model_input.layout import FeatureLayout
from recsys_committee.committee.teacher import TeacherAdapter, TeacherContext, register_teacher
from recsys_committee.models import build_model
from recsys_committee.train.checkpoint import CheckpointError, load_checkpoint, load_state_strict

if TYPE_CHECKING:
    from recsys_committee.data.logs.movielens import RecData


def load_trained_model(path: str | Path, data: Any = None, who: str = "model file") -> nn.Module:
    """Rebuild a model saved by ``train`` or ``distill`` (name + params + cardinalities in the file).

    With ``data`` (the run's RecData / PreparedData, or a feature table) the file must have been
    trained on data of the same layout (``check_trained_on``); ``who`` names the model in that
    error (e.g. ``teacher 'dlrm' file``)."""
    payload = load_checkpoint(path, required=("state_dict", "model", "params", "cardinalities", "num_dense"))
    if payload.get("domain", "rec") != "rec":
        raise CheckpointError(f"checkpoint {path} is not a recommendation model (domain {payload.get('domain')!r})")
    if data is not None:
        check_trained_on(payload, getattr(data, "table", data), f"{who} {path}")
    model = build_model(payload["model"], payload["cardinalities"], payload["num_dense"], data=data, layout=payload.get("layout"), **payload["params"])
    load_state_strict(model, payload["state_dict"], path)
    return model


def check_trained_on(saved: dict[str, Any], table: Any, what: str) -> None:
    """Refuse a model file trained on data of another layout than the run's ``table`` (its
    ``cardinalities``, ``layout``, ``dense_names``): a ``CheckpointError`` naming ``what`` (the
    model and its file) and the first feature that differs, with both values.

    Why: a frozen model reads the run's batches with the embedding tables it was trained with.
    A table smaller than the data's ids ends in an ``index out of range`` deep in the forward; a
    larger one runs silently on ids that do not mean what they meant in training (ids are
    positions in the train split's sorted vocabulary, or raw ids of another data set), so sizes
    must be equal both ways (necessary, not sufficient: the vocabularies' values are not in the
    model file). The same for the layout: a feature the file has and the data lacks would be
    read from batches without it; one the data has and the file lacks, another table, another
    role (scalar, student / expert / sequence feature) or other dense inputs mean another data
    spec. ``saved`` is the file's payload; a file written before the layout or the dense names
    were stored is compared on what it has (cardinalities, the dense width)."""
    here, there = dict(table.cardinalities), dict(saved["cardinalities"])
    layout = FeatureLayout.from_dict(saved["layout"]) if saved.get("layout") is not None else None
    role = lambda lay, f: [r for r in ("student", "expert_extra", "sequence", "scalar") if f in getattr(lay, r)]  # noqa: E731

    def fail(problem: str) -> None:
        raise CheckpointError(f"{what} was trained on other data: {problem}")

    for f in [*here, *(f for f in there if f not in here)]:
        if f not in there:
            fail(f"feature '{f}' is in this run's data, not in that file")
        if f not in here:
            fail(f"feature '{f}' is in that file, not in this run's data")
        if here[f] != there[f]:
            fail(f"feature '{f}' has {there[f]} ids in that file, {here[f]} in this run's data")
        if layout is not None and layout.table_of(f) != table.layout.table_of(f):
            fail(f"feature '{f}' uses table '{layout.table_of(f)}' in that file, '{table.layout.table_of(f)}' in this run's data")
        if layout is not None and role(layout, f) != role(table.layout, f):
            fail(f"feature '{f}' is {role(layout, f)} in that file's layout, {role(table.layout, f)} in this run's")
    dense = list(table.dense_names)
    if saved["num_dense"] != len(dense):
        fail(f"{saved['num_dense']} dense features in that file, {len(dense)} in this run's data")
    for i, (a, b) in enumerate(zip(saved.get("dense_names") or dense, dense)):
        if a != b:
            fail(f"dense feature #{i} is '{a}' in that file, '{b}' in this run's data")


class RecModelTeacher(TeacherAdapter):
    """A model trained by ``recsys-committee train``, frozen. Why an adapter and not the model
    itself: the committee core is domain-free; this is the whole of what it needs to know about
    calling a recommendation model (``model(batch).logits``). Features are read by a forward hook
    at ``tap`` (e.g. ``top``, the DLRM top MLP's output), never by editing the model."""

    def forward_model(self, batch: Any) -> Optional[torch.Tensor]:
        return self.model(batch).logits


@register_teacher("rec_model")
def rec_model_teacher(*, name: str, checkpoint: str, tap: str = "top", always_on: bool = False, context: TeacherContext) -> RecModelTeacher:
    """A trained model file (``model.safetensors``) as a frozen teacher."""
    return RecModelTeacher(load_trained_model(checkpoint, context.data, who=f"teacher '{name}' file"), name=name, tap=tap, always_on=always_on)

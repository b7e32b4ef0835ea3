"""Models saved by ``train`` / ``distill``, rebuilt from their files, and as frozen teachers.

Why its own module: the domain, the streamed teacher caches, ``score`` and export all rebuild a
trained model from its file (registry name + params + cardinalities + layout in the file, so no
config is needed); none of them should import the others to do it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import torch
from torch import nn

from recsys_committee.committee.teacher import TeacherAdapter, TeacherContext, register_teacher
from recsys_committee.models import build_model
from recsys_committee.train.checkpoint import CheckpointError, load_checkpoint, load_state_strict

if TYPE_CHECKING:
    from recsys_committee.data.logs.movielens import RecData


def load_trained_model(path: str | Path, data: Optional["RecData"] = None) -> nn.Module:
    """Rebuild a model saved by ``train`` or ``distill`` (name + params + cardinalities in the file)."""
    payload = load_checkpoint(path, required=("state_dict", "model", "params", "cardinalities", "num_dense"))
    if payload.get("domain", "rec") != "rec":
        raise CheckpointError(f"checkpoint {path} is not a recommendation model (domain {payload.get('domain')!r})")
    model = build_model(payload["model"], payload["cardinalities"], payload["num_dense"], data=data, layout=payload.get("layout"), **payload["params"])
    load_state_strict(model, payload["state_dict"], path)
    return model


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
    return RecModelTeacher(load_trained_model(checkpoint), name=name, tap=tap, always_on=always_on)

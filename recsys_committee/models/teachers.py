"""Recommendation teachers for the committee: trained TorchRec models loaded from ``train`` runs.

Why an adapter and not the model itself: the committee core is domain-free; this file is the
whole of what it needs to know about calling a RecModel (``model(batch).logits``). Features
are read by a forward hook at ``tap`` (e.g. ``top`` = the DLRM top MLP's output, or
``embeddings`` = the expert's per-feature embeddings as tokens), never by editing the model.
"""

from __future__ import annotations

from typing import Optional

import torch

from recsys_committee.committee.teacher import TeacherAdapter, TeacherContext, register_teacher
from recsys_committee.data.batching import RecBatch


class RecModelTeacher(TeacherAdapter):
    def forward_model(self, batch: RecBatch) -> Optional[torch.Tensor]:
        return self.model(batch).logits


@register_teacher("rec_model")
def rec_model_teacher(*, name: str, checkpoint: str, tap: str = "top", always_on: bool = False, context: TeacherContext) -> RecModelTeacher:
    """A model trained by ``recsys-committee train`` (its model.safetensors), frozen."""
    from recsys_committee.rec_domain import load_trained_model  # the domain reads model files; it imports this module

    return RecModelTeacher(load_trained_model(checkpoint), name=name, tap=tap, always_on=always_on)

"""The LM teacher as a committee member: the live adapter and the one served from a cache.

Why its own module: these are the committee-facing half of the LM teacher (frozen, tapped by
module path inside the BertModel, padding masked, ``reenter`` or a clear refusal of it); the
registrations in ``lm_teacher.py`` only choose which one to build and from what.
"""

from __future__ import annotations

from typing import Optional

import torch

from recsys_committee.committee.config import ReenterNotSupportedError
from recsys_committee.committee.taps import append_token, resolve_module
from recsys_committee.committee.teacher import PrecomputedTeacher, TeacherAdapter
from recsys_committee.models.lm.encoder import masked_mean
from recsys_committee.models.lm.model import LMTeacherModel
from recsys_committee.models.lm.reenter import _LAYER_TAP, _wider_masks


class LMTeacherAdapter(TeacherAdapter):
    """The live LM teacher: the encoder runs on the routed sub-batch's texts.

    ``tap`` is a module path inside the BertModel (``encoder.layer.3``); the features are that
    layer's token outputs [B, L, 384] with ``feature_mask`` marking real tokens, or their mean
    over real tokens [B, 384] with ``pool_tokens``. Logits come from the trained head when the
    model came from a checkpoint, else None.
    """

    def __init__(self, model: LMTeacherModel, name: str, tap: str = "encoder.layer.3", always_on: bool = False,
                 with_logits: bool = True, pool_tokens: bool = False) -> None:
        resolve_module(model.lm, tap)  # the error names paths inside the BertModel
        super().__init__(model, name=name, tap=f"lm.{tap}", always_on=always_on)
        self.lm_tap = tap
        self.with_logits = with_logits
        self.pool_tokens = pool_tokens
        model.set_finetune("head")  # frozen whatever it was trained with; no memo: runs live
        match = _LAYER_TAP.match(tap)
        n = model.num_layers
        self._layer = None if match is None else int(match.group(1)) % n

    def forward_model(self, batch) -> Optional[torch.Tensor]:
        hidden, mask = self.model.encode(batch.example_ids)
        if not self.with_logits:
            return None
        return self.model.head_forward(masked_mean(hidden, mask))[0]

    def feature_mask(self, batch, features: torch.Tensor) -> Optional[torch.Tensor]:
        _, mask = self.model.inputs(batch.example_ids)
        return mask[:, : features.shape[1]].to(features.device)

    def run(self, batch):
        out = super().run(batch)
        if self.pool_tokens and out.features.dim() == 3:
            out.features, out.mask = masked_mean(out.features, out.mask), None
        return out

    @property
    def supports_reenter(self) -> bool:
        return self._layer is not None and self._layer < self.model.num_layers - 1

    def reenter(self, batch, question: torch.Tensor) -> torch.Tensor:
        """The question [B, 384] enters as one extra token after the tapped layer and passes
        the upper frozen layers; returns its final output [B, 384] (autograd on: the question
        gets gradients, the frozen weights do not)."""
        if not self.supports_reenter:
            raise ReenterNotSupportedError(
                f"teacher '{self.name}': reenter needs a tap at encoder.layer.i with layers above it "
                f"(0 <= i < {self.model.num_layers - 1}), got '{self.lm_tap}'"
            )
        ids, mask = self.model.inputs(batch.example_ids)
        upper = list(self.model.lm.encoder.layer)[self._layer + 1 :]
        with append_token(self.model, self.tap, question), _wider_masks(upper):
            hidden = self.model.lm(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        return hidden[:, -1]


class CachedLMTeacher(PrecomputedTeacher):
    """The LM teacher served from a teacher cache (features + logits by example id).
    ``teacher_params``: the cached LM's parameter count (its ``model`` here has none)."""

    teacher_params: Optional[int] = None

    def reenter(self, batch, question: torch.Tensor) -> torch.Tensor:
        raise ReenterNotSupportedError(
            f"teacher '{self.name}' is served from a cache (kind lm_cached): there is no model to re-enter. "
            "Use answer_mode: attend, or the live teacher kind lm_minilm for reenter."
        )

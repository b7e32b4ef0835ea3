"""Frozen teachers behind one small interface.

Why an adapter: the committee must not know how a DLRM, an LM or a CNN is called. A domain
subclasses ``TeacherAdapter`` and writes one method, ``forward_model(batch) -> logits or
None``; the base class freezes the model, keeps it in eval mode whatever ``train()`` says (so
BatchNorm statistics and dropout never move), runs it under ``no_grad`` and reads the features
through a forward hook at ``tap`` (docs/METHOD.md: forward only, hooks not edits).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import nn

from recsys_committee.committee.config import ReenterNotSupportedError
from recsys_committee.committee.taps import normalize_features, resolve_module, tap_outputs
from recsys_committee.committee.types import Batch, TeacherOutput
from recsys_committee.registry import Registry

# Domains register teacher builders here: ``@register_teacher("expert_dlrm")`` on a function
# returning a TeacherAdapter; the YAML names the key and its keyword arguments, and every
# builder also receives ``context`` (a ``TeacherContext``).
TEACHERS: Registry[Callable[..., "TeacherAdapter"]] = Registry("teacher")
register_teacher = TEACHERS.register


@dataclass
class TeacherContext:
    """What the run gives every teacher builder besides its YAML entry. Why explicit: an LM
    teacher renders its texts from the run's data and a cached teacher fills its cache with a
    progress bar that ``train.progress: false`` silences; builders that need neither ignore it."""

    data: Any = None
    progress: bool = True


def build_teacher(name: str, /, *args: Any, context: Optional[TeacherContext] = None, **kwargs: Any) -> "TeacherAdapter":
    return TEACHERS.build(name, *args, context=context or TeacherContext(), **kwargs)


def list_teachers() -> list[str]:
    return TEACHERS.names()


class TeacherAdapter(nn.Module, metaclass=abc.ABCMeta):
    """A frozen model, a tap path and how to call it.

    Subclasses implement ``forward_model``; those that can take a question token at the tapped
    layer also override ``supports_reenter`` and ``reenter``; those whose padded tokens must be
    ignored override ``feature_mask``.
    """

    def __init__(self, model: nn.Module, name: str, tap: Optional[str], always_on: bool = False) -> None:
        super().__init__()
        self.model = model
        self.name = name
        self.tap = tap
        self.always_on = always_on
        # False: the teacher's logits are no KD target (a teacher below the student on
        # validation only pulls it down through them); it still teaches through its features
        self.logit_target = True
        model.requires_grad_(False)
        model.eval()
        if tap is not None:
            resolve_module(model, tap)  # fail at construction on a bad path, naming close ones
        self.feature_dim: Optional[int] = None  # set by probe()
        self.feature_kind: Optional[str] = None  # "vector" | "tokens", set by probe()
        self.has_logits: Optional[bool] = None  # set by probe()

    # ----------------------------------------------------------------- what a domain writes
    @abc.abstractmethod
    def forward_model(self, batch: Batch) -> Optional[torch.Tensor]:
        """Run ``self.model`` on ``batch``; return its task logits (the student's logit shape
        per row), or None if the model has no task head. The tap records the features."""

    def feature_mask(self, batch: Batch, features: torch.Tensor) -> Optional[torch.Tensor]:
        """[B, L] bool (True = real token) for padded token features; None = all real."""
        return None

    @property
    def supports_reenter(self) -> bool:
        return False

    def reenter(self, batch: Batch, question: torch.Tensor) -> torch.Tensor:
        """Feed ``question`` [B, d_k] as an extra token at the tap and return that token's
        output [B, d_k] from the upper frozen layers, WITH autograd on (the question must get
        gradients; the teacher's parameters are frozen so they never do)."""
        raise ReenterNotSupportedError(
            f"teacher '{self.name}' ({type(self).__name__}) cannot answer in 'reenter' mode: its adapter "
            "does not implement reenter(). Use answer_mode: attend, or implement supports_reenter/reenter."
        )

    # ----------------------------------------------------------------- what the core calls
    def train(self, mode: bool = True) -> "TeacherAdapter":
        """Keep the frozen model in eval mode whatever the committee is set to."""
        super().train(mode)
        self.model.eval()
        return self

    def run(self, batch: Batch) -> TeacherOutput:
        """Features (at the tap) and logits of ``batch``, without autograd."""
        if self.tap is None:
            raise NotImplementedError(f"teacher '{self.name}' has no tap path; set tap or override run()")
        with torch.no_grad(), tap_outputs(self.model, [self.tap]) as taps:
            logits = self.forward_model(batch)
        if self.tap not in taps:
            raise RuntimeError(f"teacher '{self.name}': the module at tap '{self.tap}' did not run during forward_model")
        features = normalize_features(taps[self.tap])
        mask = self.feature_mask(batch, features) if features.dim() == 3 else None
        return TeacherOutput(features=features, logits=logits, mask=mask)

    def forward(self, batch: Batch) -> TeacherOutput:
        return self.run(batch)

    def probe(self, batch: Batch) -> TeacherOutput:
        """Run once on a few rows to learn the feature width/kind and whether there are logits."""
        out = self.run(batch)
        self.feature_dim = int(out.features.shape[-1])
        self.feature_kind = "tokens" if out.features.dim() == 3 else "vector"
        self.has_logits = out.logits is not None and self.logit_target  # no target: read as headless (KD, avg_kd, camkd skip it)
        return out

    def extra_repr(self) -> str:
        return f"name={self.name!r}, tap={self.tap!r}, always_on={self.always_on}"


class PrecomputedTeacher(TeacherAdapter):
    """A teacher whose features (and logits) were computed once and stored, looked up by id.

    Why: on CPU the LM teacher is too slow to run every step; its tapped features are cached
    (docs/DATA.md) and this adapter serves them by ``batch.<id_attr>`` (row ids into the cache).
    The cache tensors are non-persistent buffers: they follow ``.to(device)`` but stay out of
    checkpoints. It cannot ``reenter`` (there is no model left to run).
    """

    def __init__(
        self,
        features: torch.Tensor,
        logits: Optional[torch.Tensor],
        name: str,
        always_on: bool = False,
        mask: Optional[torch.Tensor] = None,
        id_attr: str = "example_ids",
    ) -> None:
        super().__init__(nn.Module(), name=name, tap=None, always_on=always_on)
        if features.dim() not in (2, 3):
            raise ValueError(f"cached features must be [N, d] or [N, L, d], got shape {tuple(features.shape)}")
        if logits is not None and logits.shape[0] != features.shape[0]:
            raise ValueError("cached logits and features have different numbers of rows")
        self.register_buffer("features", features, persistent=False)
        self.register_buffer("logits", logits, persistent=False)
        self.register_buffer("mask", mask, persistent=False)
        self.id_attr = id_attr

    def forward_model(self, batch: Batch) -> Optional[torch.Tensor]:  # not used: run() is overridden
        return None

    def run(self, batch: Batch) -> TeacherOutput:
        ids = getattr(batch, self.id_attr, None)
        if ids is None:
            raise AttributeError(f"teacher '{self.name}' looks rows up by batch.{self.id_attr}, which {type(batch).__name__} lacks")
        ids = ids.to(self.features.device)
        return TeacherOutput(
            features=self.features[ids],
            logits=None if self.logits is None else self.logits[ids],
            mask=None if self.mask is None else self.mask[ids],
        )

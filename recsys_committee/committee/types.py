"""The contract between the committee core and a domain (recommendation, vision).

Why: the core must know nothing about TorchRec or torchvision. A domain hands it
  * a batch object that can be cut into sub-batches (``Batch.subset``), so routed
    teachers run only on the samples the gate sends them;
  * a student module whose forward returns ``StudentOutput`` (logits, hidden h, cheap h0);
  * teachers wrapped in ``TeacherAdapter`` subclasses that say how to run the frozen model on a
    batch and where its task logits are; features come from forward hooks on named modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol, runtime_checkable

import torch


@runtime_checkable
class Batch(Protocol):
    """Anything with labels and a way to take the rows at ``index``."""

    labels: torch.Tensor  # [B] float 0/1 for binary tasks, [B] long for multiclass

    def subset(self, index: torch.Tensor) -> "Batch":
        ...

    def __len__(self) -> int:
        ...


@dataclass
class StudentOutput:
    logits: torch.Tensor  # [B] (binary) or [B, C] (multiclass)
    hidden: torch.Tensor  # h: [B, ds], the representation just before the prediction head
    h0: torch.Tensor  # [B, d0], cheap student-side features (pooled embeddings) for the gate


@dataclass
class TeacherOutput:
    features: torch.Tensor  # [B, d] vector or [B, L, d] tokens (4-D maps are flattened to tokens)
    logits: Optional[torch.Tensor]  # same shape as the student's logits, or None (no task head)
    mask: Optional[torch.Tensor] = None  # [B, L] bool, True = real token (for padded sequences)

"""The Question-Answer mechanism (docs/METHOD.md "Question Augmenter", "Teacher answer",
"Answer Augmenter").

Why per teacher and per sub-batch: a teacher runs only on the rows the gate routes to it, so
every step here takes the rows of one teacher (``h[idx]``, its features on those rows) and
returns that teacher's answer for exactly those rows; nothing is computed for skipped pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import nn

from recsys_committee.committee.config import CommitteeConfigError, ReenterNotSupportedError
from recsys_committee.committee.types import Batch, TeacherOutput


@dataclass(frozen=True)
class TeacherInfo:
    """What the core learned about a teacher by probing it."""

    name: str
    feature_dim: int
    feature_kind: str  # "vector" | "tokens"
    has_logits: bool
    always_on: bool = False


class QuestionAugmenter(nn.Module):
    """u = W_u h;  q_k = u ⊙ E_k;  Q_k = P_k(q_k).

    E starts near 1 (1 + N(0, 0.1^2)) so every teacher first hears roughly the same question u
    and the per-teacher differences are learned, rather than starting from random masks that
    would zero out half of u for some teacher.
    """

    def __init__(self, ds: int, dq: int, teacher_dims: Sequence[int]) -> None:
        super().__init__()
        self.w_u = nn.Linear(ds, dq)
        self.embedding = nn.Parameter(1.0 + 0.1 * torch.randn(len(teacher_dims), dq))
        self.proj = nn.ModuleList(nn.Linear(dq, d) for d in teacher_dims)

    def base(self, h: torch.Tensor) -> torch.Tensor:
        """u for all rows, computed once and then indexed per teacher."""
        return self.w_u(h)

    def forward(self, u: torch.Tensor, k: int) -> torch.Tensor:
        return self.proj[k](u * self.embedding[k])


class AttendAnswer(nn.Module):
    """``attend`` answer of one teacher.

    tokens:  a_k = softmax(Q_k K_k^T / sqrt(d_k)) V_k with K_k, V_k linear maps of F_k, over
             the real tokens only (a row with no real token answers 0);
    vector:  a_k = F_k ⊙ sigmoid(Q_k) (the question gates the teacher's feature dimensions).
    """

    def __init__(self, d: int, tokens: bool) -> None:
        super().__init__()
        self.d = d
        self.tokens = tokens
        if tokens:
            self.key = nn.Linear(d, d)
            self.value = nn.Linear(d, d)

    def forward(self, question: torch.Tensor, features: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if not self.tokens:
            return features * torch.sigmoid(question)
        keys = self.key(features)  # [n, L, d]
        values = self.value(features)
        scores = torch.einsum("nd,nld->nl", question, keys) / math.sqrt(self.d)
        if mask is not None:
            mask = mask.to(torch.bool)
            scores = scores.masked_fill(~mask, float("-inf"))
            any_real = mask.any(dim=1, keepdim=True)
            scores = torch.where(any_real, scores, torch.zeros_like(scores))  # avoid softmax(-inf...) = NaN
            attn = torch.softmax(scores, dim=-1) * any_real
        else:
            attn = torch.softmax(scores, dim=-1)
        return torch.einsum("nl,nld->nd", attn, values)


class AnswerAugmenter(nn.Module):
    """â_k = A_k(a_k): LayerNorm -> Linear -> GELU -> Linear, d_k -> ds.

    The LayerNorm is there because teachers' feature scales differ by orders of magnitude (an
    LM's hidden states vs a DLRM's MLP activations); without it one teacher's answers would
    dominate the shared head H at initialisation.
    """

    def __init__(self, d: int, ds: int, hidden: Optional[int] = None) -> None:
        super().__init__()
        hidden = hidden or ds
        self.net = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, ds))

    def forward(self, answer: torch.Tensor) -> torch.Tensor:
        return self.net(answer)


class QAModule(nn.Module):
    """Question, answer and answer augmentation for all teachers, one teacher's rows at a time."""

    def __init__(
        self,
        ds: int,
        dq: int,
        teachers: Sequence[TeacherInfo],
        mode: str = "attend",
        answer_hidden: Optional[int] = None,
    ) -> None:
        super().__init__()
        if mode not in ("attend", "reenter"):
            raise CommitteeConfigError(f"answer_mode must be 'attend' or 'reenter', got '{mode}'")
        self.mode = mode
        dims = [t.feature_dim for t in teachers]
        self.question = QuestionAugmenter(ds, dq, dims)
        # reenter mode has no attend parameters; Identity keeps indices aligned with teachers
        self.attend = nn.ModuleList(
            AttendAnswer(t.feature_dim, t.feature_kind == "tokens") if mode == "attend" else nn.Identity()
            for t in teachers
        )
        self.augment = nn.ModuleList(AnswerAugmenter(d, ds, answer_hidden) for d in dims)

    @staticmethod
    def check_reenter(teachers: Sequence[nn.Module]) -> None:
        """Build-time check: every teacher must support ``reenter``, else a clear error now."""
        bad = [getattr(t, "name", type(t).__name__) for t in teachers if not getattr(t, "supports_reenter", False)]
        if bad:
            raise ReenterNotSupportedError(
                f"answer_mode 'reenter' needs teachers that accept a question token at their tap; "
                f"{', '.join(repr(b) for b in bad)} cannot (their adapters do not implement reenter). "
                "Use answer_mode: attend, or drop these teachers."
            )

    def forward(
        self,
        k: int,
        u_rows: torch.Tensor,
        teacher_out: Optional[TeacherOutput] = None,
        teacher: Optional[nn.Module] = None,
        sub_batch: Optional[Batch] = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(a_k, â_k) for the rows of teacher ``k``; ``u_rows`` = ``question.base(h)[idx]``."""
        question = self.question(u_rows, k)
        if self.mode == "attend":
            if teacher_out is None:
                raise ValueError("attend mode needs the teacher's output on these rows")
            features = teacher_out.features.to(question.dtype)
            answer = self.attend[k](question, features, teacher_out.mask)
        else:
            if teacher is None or sub_batch is None:
                raise ValueError("reenter mode needs the teacher and its sub-batch")
            answer = teacher.reenter(sub_batch, question).to(question.dtype)
            if answer.shape != question.shape:
                raise ValueError(
                    f"teacher '{getattr(teacher, 'name', '?')}'.reenter returned shape {tuple(answer.shape)}, "
                    f"expected {tuple(question.shape)} (one d_k vector per row)"
                )
        return answer, self.augment[k](answer)

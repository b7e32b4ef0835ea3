"""Distillation losses, all per sample (docs/METHOD.md "Losses", "Baselines").

Two scopes, so that routing stays exact:
  * ``scope = "teacher"``: computed on ONE teacher's sub-batch (the rows routed to it) and
    returned per row; the committee scatters the rows back into a [B, K] matrix and combines
    ``sum_k w_k * loss[b, k]`` over the ACTIVE teachers (skipped pairs contribute nothing),
    then averages over the batch. (kd, answer, answer_kd, align, feature_kd)
  * ``scope = "step"``: computed once from the whole step (``StepContext``) and returned per
    sample [B] (averaged) or as a scalar. (task, avg_kd, camkd, confidence_kd, gate)
A loss returning None does not apply (e.g. KD for a teacher without a task head).

Adding a loss = one ``@register_loss("name")`` builder ``(spec, **options) -> LossModule``
plus its weight in the config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from recsys_committee.committee.config import CommitteeConfigError
from recsys_committee.committee.gate import Gate, GateDecision
from recsys_committee.committee.qa import TeacherInfo
from recsys_committee.committee.types import StudentOutput, TeacherOutput
from recsys_committee.registry import Registry

# ---------------------------------------------------------------------------- closed forms


def task_loss(logits: torch.Tensor, labels: torch.Tensor, task: str) -> torch.Tensor:
    """Per-sample task loss: BCE on logits [B] (binary) or CE on logits [B, C] (multiclass)."""
    if task == "binary":
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none")
    return F.cross_entropy(logits, labels.long(), reduction="none")


def soft_targets(logits: torch.Tensor, temperature: float, task: str) -> torch.Tensor:
    """Teacher probabilities at temperature T: sigmoid (binary, P(y=1)) or softmax (multiclass)."""
    scaled = logits / temperature
    return torch.sigmoid(scaled) if task == "binary" else torch.softmax(scaled, dim=-1)


def kd_from_targets(student_logits: torch.Tensor, target: torch.Tensor, temperature: float, task: str) -> torch.Tensor:
    """T^2 * KL(target || student at T), per sample.

    Binary: KL between Bernoulli(target) and Bernoulli(sigmoid(s/T)), written as cross-entropy
    minus entropy so it is stable for saturated logits. Multiclass: KL of the softmaxes.
    """
    scaled = student_logits / temperature
    if task == "binary":
        target = target.to(scaled.dtype)
        cross = F.binary_cross_entropy_with_logits(scaled, target, reduction="none")
        entropy = -(torch.xlogy(target, target) + torch.xlogy(1 - target, 1 - target))
        kl = cross - entropy
    else:
        kl = (torch.xlogy(target, target) - target * torch.log_softmax(scaled, dim=-1)).sum(dim=-1)
    return kl * temperature**2


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, task: str) -> torch.Tensor:
    """Hinton KD per sample, with the T^2 scaling that keeps gradients comparable across T."""
    return kd_from_targets(student_logits, soft_targets(teacher_logits.detach(), temperature, task), temperature, task)


def align_loss(hidden: torch.Tensor, answer_hat: torch.Tensor) -> torch.Tensor:
    """||norm(h) - norm(sg(â))||^2 per sample; the stop-gradient keeps the answer from
    collapsing onto a copy of h (only h moves towards the answer)."""
    return (F.normalize(hidden, dim=-1) - F.normalize(answer_hat.detach(), dim=-1)).pow(2).sum(dim=-1)


# ---------------------------------------------------------------------------- contexts


@dataclass
class LossSpec:
    """What a loss builder may need to size itself."""

    task: str
    ds: int
    teachers: Sequence[TeacherInfo]
    kd_temperature: float


@dataclass
class TeacherView:
    """One teacher's rows of the step: ``index`` into the batch and everything on those rows."""

    k: int
    name: str
    index: torch.Tensor  # [n] rows of the batch routed to this teacher
    logits: torch.Tensor  # student logits on these rows
    hidden: torch.Tensor  # student h on these rows
    labels: torch.Tensor
    teacher: TeacherOutput
    task: str
    head: Callable[[torch.Tensor], torch.Tensor]  # shared head H: [n, ds] -> student-shaped logits
    answer: Optional[torch.Tensor] = None  # a_k (None when the method has no QA)
    answer_hat: Optional[torch.Tensor] = None  # â_k


@dataclass
class StepContext:
    """The whole step, after every routed teacher ran."""

    student: StudentOutput
    labels: torch.Tensor
    task: str
    decision: Optional[GateDecision]
    gate: Optional[Gate]
    teacher_logits: Optional[torch.Tensor]  # [B, K] or [B, K, C]; zeros where absent
    has_logits: Optional[torch.Tensor]  # [B, K] bool: teacher ran on the sample and has logits
    per_sample: Mapping[str, torch.Tensor] = field(default_factory=dict)  # teacher-scope [B, K], built when read
    pair_losses: dict[str, torch.Tensor] = field(default_factory=dict)  # weight * teacher-scope [B, K], weighted ones only
    labeled: Optional[torch.Tensor] = None  # [B] bool where the step mixes in transfer rows (labels there are 0 placeholders)


def labeled_rows(labels: torch.Tensor) -> Optional[torch.Tensor]:
    """[B] bool, True where the row has a label (binary: not NaN; multiclass: >= 0), or None
    when every row has one (the usual step: no masking work at all). Rows without a label are
    transfer rows: only the teachers' answers teach on them."""
    mask = ~torch.isnan(labels) if labels.is_floating_point() else labels >= 0
    return None if bool(mask.all()) else mask


class LossModule(nn.Module):
    scope = "teacher"  # "teacher" | "step"
    # a loss that compares with the label: the committee masks it on rows without one (transfer
    # rows); a loss that reads only teachers runs there, weighted by ``transfer_weight``
    reads_labels = False
    # a step loss that combines every teacher's logits sets this: the committee then fills
    # StepContext.teacher_logits / has_logits ([B, K(, C)]); otherwise they are None
    reads_teacher_logits = False


LOSSES: Registry[Callable[..., LossModule]] = Registry("loss")
register_loss = LOSSES.register


def list_losses() -> list[str]:
    return LOSSES.names()


def build_loss(name: str, spec: LossSpec, **options: Any) -> LossModule:
    return LOSSES.build(name, spec, **options)


# ---------------------------------------------------------------------------- registered losses


class TaskLoss(LossModule):
    scope = "step"
    reads_labels = True

    def forward(self, ctx: StepContext) -> torch.Tensor:
        return task_loss(ctx.student.logits, ctx.labels, ctx.task)


class KDLoss(LossModule):
    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, view: TeacherView) -> Optional[torch.Tensor]:
        if view.teacher.logits is None:
            return None
        return kd_loss(view.logits, view.teacher.logits, self.temperature, view.task)


class AnswerLoss(LossModule):
    """L_task(H(â_k), y): the answer must predict the label through the shared head H."""

    reads_labels = True

    def forward(self, view: TeacherView) -> Optional[torch.Tensor]:
        if view.answer_hat is None:
            return None
        return task_loss(view.head(view.answer_hat), view.labels, view.task)


class AnswerKDLoss(LossModule):
    """KD(H(â_k), t_k; T): the answer must also say what its own teacher says, on every row.

    Why: the answer loss reads the label, so on transfer rows (most rows when a transfer set is
    on) the QA module learns nothing; this term trains it there too, from the teacher it asks."""

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, view: TeacherView) -> Optional[torch.Tensor]:
        if view.answer_hat is None or view.teacher.logits is None:
            return None
        return kd_loss(view.head(view.answer_hat), view.teacher.logits, self.temperature, view.task)


class AlignLoss(LossModule):
    def forward(self, view: TeacherView) -> Optional[torch.Tensor]:
        if view.answer_hat is None:
            return None
        return align_loss(view.hidden, view.answer_hat)


class GateLoss(LossModule):
    scope = "step"

    def forward(self, ctx: StepContext) -> Optional[torch.Tensor]:
        if ctx.gate is None or ctx.decision is None or not ctx.gate.learnable:
            return None
        if ctx.gate.learns_from == "pair_losses":
            return ctx.gate.loss(ctx.decision, ctx.pair_losses)
        answers = ctx.per_sample.get("answer")
        if answers is None:
            raise RuntimeError("the gate loss needs the per-sample answer losses (loss 'answer')")
        return ctx.gate.loss(ctx.decision, answers)


class FeatureKDLoss(LossModule):
    """FitNets: a learned projector per teacher maps h to the teacher's feature space; MSE.

    Token features are reduced to their mean over real tokens (a single target per sample).
    ``normalize`` compares unit vectors instead, for teachers whose feature scale is extreme.
    """

    def __init__(self, ds: int, teachers: Sequence[TeacherInfo], normalize: bool = False) -> None:
        super().__init__()
        self.proj = nn.ModuleList(nn.Linear(ds, t.feature_dim) for t in teachers)
        self.normalize = normalize

    def forward(self, view: TeacherView) -> torch.Tensor:
        target = view.teacher.features.detach()
        if target.dim() == 3:
            if view.teacher.mask is None:
                target = target.mean(dim=1)
            else:
                m = view.teacher.mask.to(target.dtype).unsqueeze(-1)
                target = (target * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)
        pred = self.proj[view.k](view.hidden)
        target = target.to(pred.dtype)
        if self.normalize:
            pred, target = F.normalize(pred, dim=-1), F.normalize(target, dim=-1)
        return (pred - target).pow(2).mean(dim=-1)


class _MultiTeacherKD(LossModule):
    """Step-scoped KD from every teacher with logits; skipped when no teacher answered."""

    scope = "step"
    reads_teacher_logits = True

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, ctx: StepContext) -> Optional[torch.Tensor]:
        if ctx.teacher_logits is None or not bool(ctx.has_logits.any()):
            return None
        return self.combine(ctx)

    def combine(self, ctx: StepContext) -> torch.Tensor:
        raise NotImplementedError

    def weighted_kd(self, ctx: StepContext, scores: torch.Tensor) -> torch.Tensor:
        """sum_k w_k KD(s, t_k; T) per sample, w = softmax_k(scores) over the teachers that ran."""
        t = ctx.teacher_logits.detach()
        kd = torch.stack([kd_loss(ctx.student.logits, t[:, j], self.temperature, ctx.task) for j in range(t.shape[1])], dim=1)
        w = torch.softmax(torch.where(ctx.has_logits, scores, torch.full_like(scores, float("-inf"))), dim=1)
        w = torch.nan_to_num(w)  # rows without any teacher
        return (w * torch.where(ctx.has_logits, kd, torch.zeros_like(kd))).sum(dim=1)


class AvgKDLoss(_MultiTeacherKD):
    """KD towards the average of the soft targets of the teachers that ran (with logits)."""

    def combine(self, ctx: StepContext) -> torch.Tensor:
        probs = soft_targets(ctx.teacher_logits, self.temperature, ctx.task)  # [B, K(, C)]
        m = _expand_like(ctx.has_logits.to(probs.dtype), probs)
        count = ctx.has_logits.sum(dim=1).clamp_min(1)
        target = (probs * m).sum(dim=1) / _expand_like(count.to(probs.dtype), probs.sum(dim=1))
        loss = kd_from_targets(ctx.student.logits, target, self.temperature, ctx.task)
        return loss * ctx.has_logits.any(dim=1)  # a sample no teacher answered gets no KD


class CAMKDLoss(_MultiTeacherKD):
    """CA-MKD-style: per-sample teacher weights softmax_k(-CE(t_k, y)) (confident, correct
    teachers count more), then sum_k w_k KD(s, t_k; T)."""

    def combine(self, ctx: StepContext) -> torch.Tensor:
        t = ctx.teacher_logits.detach()
        ce = torch.stack([task_loss(t[:, j], ctx.labels, ctx.task) for j in range(t.shape[1])], dim=1)  # [B, K]
        if ctx.labeled is not None:  # no label, no confidence to weigh by: equal weights (average KD) there
            ce = ce * ctx.labeled[:, None]
        return self.weighted_kd(ctx, -ce)


class ConfidenceKDLoss(_MultiTeacherKD):
    """sum_k w_k KD(s, t_k; T) with per-sample weights from each teacher's own confidence:
    w = softmax_k(-H(p_k) / tau) over the teachers that ran, H the entropy of teacher k's
    prediction at temperature 1.

    Why: it reads no label, so unlike CA-MKD's weights it weighs transfer rows too (most rows when
    a transfer set is on); a teacher unsure of a sample counts less there, a sure one more."""

    def __init__(self, temperature: float, confidence_temperature: float = 1.0) -> None:
        super().__init__(temperature)
        if not (confidence_temperature > 0 and math.isfinite(confidence_temperature)):
            raise CommitteeConfigError(f"loss_options.confidence_kd.confidence_temperature must be > 0, got {confidence_temperature}")
        self.confidence_temperature = confidence_temperature

    def combine(self, ctx: StepContext) -> torch.Tensor:
        t = ctx.teacher_logits.detach()
        entropy = torch.stack([prediction_entropy(t[:, j], ctx.task) for j in range(t.shape[1])], dim=1)  # [B, K]
        return self.weighted_kd(ctx, -entropy / self.confidence_temperature)


def prediction_entropy(logits: torch.Tensor, task: str) -> torch.Tensor:
    """Entropy (nats) of a prediction at temperature 1, per sample: Bernoulli (binary) or categorical."""
    p = soft_targets(logits, 1.0, task)
    if task == "binary":
        return -(torch.xlogy(p, p) + torch.xlogy(1 - p, 1 - p))
    return -torch.xlogy(p, p).sum(dim=-1)


def _expand_like(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    while x.dim() < like.dim():
        x = x.unsqueeze(-1)
    return x


@register_loss("task")
def _task(spec: LossSpec) -> LossModule:
    return TaskLoss()


@register_loss("kd")
def _kd(spec: LossSpec, temperature: Optional[float] = None) -> LossModule:
    return KDLoss(temperature or spec.kd_temperature)


@register_loss("answer")
def _answer(spec: LossSpec) -> LossModule:
    return AnswerLoss()


@register_loss("answer_kd")
def _answer_kd(spec: LossSpec, temperature: Optional[float] = None) -> LossModule:
    return AnswerKDLoss(temperature or spec.kd_temperature)


@register_loss("align")
def _align(spec: LossSpec) -> LossModule:
    return AlignLoss()


@register_loss("gate")
def _gate(spec: LossSpec) -> LossModule:
    return GateLoss()


@register_loss("feature_kd")
def _feature_kd(spec: LossSpec, normalize: bool = False) -> LossModule:
    return FeatureKDLoss(spec.ds, spec.teachers, normalize=normalize)


@register_loss("avg_kd")
def _avg_kd(spec: LossSpec, temperature: Optional[float] = None) -> LossModule:
    return AvgKDLoss(temperature or spec.kd_temperature)


@register_loss("camkd")
def _camkd(spec: LossSpec, temperature: Optional[float] = None) -> LossModule:
    return CAMKDLoss(temperature or spec.kd_temperature)


@register_loss("confidence_kd")
def _confidence_kd(spec: LossSpec, temperature: Optional[float] = None, confidence_temperature: float = 1.0) -> LossModule:
    return ConfidenceKDLoss(temperature or spec.kd_temperature, confidence_temperature)

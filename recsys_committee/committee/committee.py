"""The committee: one training step of any method (docs/METHOD.md), in the order the method reads.

    student forward -> gate decides (before any teacher runs) -> for each teacher: gather the
    rows routed to it, run it frozen on that sub-batch, ask/answer on those rows, per-row
    losses -> scatter back to [B, K] -> weight by w over the active pairs -> total.

Why one class for every method: baselines and DiverseDistill share this harness; the method
only picks teachers, routing and losses (``baselines.py``), so their numbers are comparable and
their teacher-forward counts are measured the same way.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import torch
from torch import nn

from recsys_committee.committee.baselines import MethodSpec, method_spec
from recsys_committee.committee.config import CommitteeConfig, CommitteeConfigError, NonFiniteLossError
from recsys_committee.committee.gate import GATES, ForwardCounter, Gate, GateDecision
from recsys_committee.committee.losses import LOSSES, LossSpec, StepContext, TeacherView, build_loss, labeled_rows
from recsys_committee.committee.qa import QAModule, TeacherInfo
from recsys_committee.committee.taps import TapPathError, resolve_module
from recsys_committee.committee.teacher import TeacherAdapter
from recsys_committee.committee.types import Batch, StudentOutput, TeacherOutput
from recsys_committee.registry import UnknownNameError, check_kwargs

GATE_SEED_OFFSET = 7_919  # the gate's initialisation stream: run seed + this
PROBE_ROWS = 4  # teachers are probed on a few rows only (an LM forward is not free)


@dataclass
class CommitteeStepOutput:
    loss: torch.Tensor  # scalar: sum of weight * term
    terms: dict[str, torch.Tensor]  # raw (unweighted) scalar terms, by loss name
    student: StudentOutput
    active: Optional[torch.Tensor] = None  # [B, K] bool: which teacher ran on which sample
    weights: Optional[torch.Tensor] = None  # [B, K] w (0 where not active)
    per_sample: Mapping[str, torch.Tensor] = field(default_factory=dict)  # teacher-scope losses [B, K] (PairMatrices)
    answers: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # name -> (rows, â)


class PairMatrices(Mapping[str, torch.Tensor]):
    """{teacher-scope loss: [B, K] detached per-pair values, 0 where the pair was skipped},
    each matrix built on first read. Why lazy: only a learned gate (its loss) and reports read
    them; scattering every loss into [B, K] on every step of every method is routing overhead."""

    def __init__(self, cols: dict[str, list[tuple[int, torch.Tensor, torch.Tensor]]], b: int, k_total: int) -> None:
        self._cols = {n: c for n, c in cols.items() if c}
        self._shape = (b, k_total)
        self._built: dict[str, torch.Tensor] = {}

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self._built:
            columns = self._cols[name]  # KeyError for a loss that produced nothing
            matrix = columns[0][2].new_zeros(self._shape)
            for k, idx, values in columns:
                matrix[idx, k] = values.detach()
            self._built[name] = matrix
        return self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._cols)

    def __len__(self) -> int:
        return len(self._cols)


def check_losses(cfg: CommitteeConfig) -> None:
    """Refuse loss names no registry entry answers to (with the close matches), a loss listed by
    hand in ``losses`` that has no weight (it would be dropped silently, as a weight of 0 is), and
    ``loss_options`` a loss's builder does not take. Called when a run reads its config too, so
    the mistake costs no teacher forward."""
    weights = cfg.merged_weights()
    for name in weights:
        if name not in LOSSES:
            LOSSES.get(name)  # raises with close matches
    for name in cfg.losses or ():
        LOSSES.get(name)
        if name not in weights:
            raise CommitteeConfigError(f"loss '{name}' in committee.losses has no weight: set committee.weights.{name}")
    for name, options in cfg.loss_options.items():
        check_kwargs(LOSSES.get(name), dict(options), where=f"loss '{name}'")


class Committee(nn.Module):
    """Student + frozen teachers + the distillation module (QA, gate, loss modules).

    Build with ``Committee.build``; train ``trainable_parameters()``; export with
    ``export.export_student``. Teachers are submodules (so ``.to(device)`` moves them) but are
    frozen, kept in eval mode, and left out of ``trainable_parameters`` / ``distill_state_dict``.
    """

    def __init__(
        self,
        student: nn.Module,
        teachers: Sequence[TeacherAdapter],
        infos: Sequence[TeacherInfo],
        gate: Optional[Gate],
        qa: Optional[QAModule],
        losses: dict[str, nn.Module],
        weights: dict[str, float],
        task: str,
        logit_shape: tuple[int, ...],
        config: CommitteeConfig,
        head_path: Optional[str] = None,
        separate_head: Optional[nn.Module] = None,
    ) -> None:
        super().__init__()
        self.student = student
        self.teachers = nn.ModuleList(teachers)
        self.infos = list(infos)
        self.gate = gate
        self.qa = qa
        self.losses = nn.ModuleDict(losses)
        self.reads_teacher_logits = any(getattr(m, "reads_teacher_logits", False) for m in self.losses.values())
        self.weights = dict(weights)
        self.task = task
        self.logit_shape = tuple(logit_shape)
        self.config = config
        self.head_path = head_path
        self.separate_head = separate_head
        self.counter = ForwardCounter([t.name for t in teachers])
        # distributed runs set this to ``DistContext.max_int`` (see train/distributed.py)
        self.row_sync: Optional[Callable[[int], int]] = None

    # ------------------------------------------------------------------------------- build
    @classmethod
    def build(
        cls,
        student: nn.Module,
        teachers: Sequence[TeacherAdapter],
        sample_batch: Batch,
        cfg: Optional[CommitteeConfig] = None,
    ) -> "Committee":
        """Probe the student and teachers on ``sample_batch``, check the config against what
        they are, and assemble the method. Every config mistake fails here, not at step 1000."""
        cfg = cfg or CommitteeConfig()
        spec = method_spec(cfg.method)
        _check_teachers(teachers)
        s_out = _probe_student(student, sample_batch)
        task = _infer_task(cfg.task, s_out, sample_batch.labels)
        logit_shape = tuple(s_out.logits.shape[1:])
        ds, d0 = int(s_out.hidden.shape[-1]), int(s_out.h0.flatten(1).shape[-1])
        device = s_out.hidden.device

        chosen = _choose_teachers(spec, cfg, teachers)
        probe_rows = sample_batch.subset(torch.arange(min(len(sample_batch), PROBE_ROWS), device=sample_batch.labels.device))
        for t in chosen:
            t.requires_grad_(False)  # the contract, whatever was done to the model since wrapping
            _probe_teacher(t, probe_rows, logit_shape)
        if spec.teachers == "with_logits":
            chosen = [t for t in chosen if t.has_logits]
            if not chosen:
                raise CommitteeConfigError(f"method '{cfg.method}' needs teachers with task logits; none of {[t.name for t in teachers]} has them")
        infos = [TeacherInfo(t.name, int(t.feature_dim), str(t.feature_kind), bool(t.has_logits), t.always_on) for t in chosen]

        check_losses(cfg)
        weights = cfg.merged_weights()
        names = list(cfg.losses) if cfg.losses is not None else list(spec.losses)  # checked by check_losses
        names = [n for n in names if weights.get(n, 0.0) != 0.0]
        uses_qa = spec.uses_qa or any(n in ("answer", "align") for n in names)
        if names != ["task"] and not chosen:
            raise CommitteeConfigError(f"method '{cfg.method}' with losses {names} needs at least one teacher")
        if "kd" in names and not any(i.has_logits for i in infos):
            raise CommitteeConfigError(f"loss 'kd' needs a teacher with task logits; {[i.name for i in infos]} have none")

        gate: Optional[Gate] = None
        if chosen:
            gate_name = cfg.gate if spec.gated else "dense"
            # The gate's parameters are drawn from a generator of their own (seeded from the run's
            # seed): building a gate must not move the global stream, or every gate would get
            # another QA-module initialisation than the dense and random runs it is compared with
            # (measured: a value gate routing exactly at random sat 0.4% below random on validation).
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed((torch.initial_seed() + GATE_SEED_OFFSET) % 2**63)  # any initial seed fits
                gate = GATES.build(gate_name, n_teachers=len(chosen), d0=d0, always_on=[t.always_on for t in chosen], config=cfg.gate_config)
            if gate.learns_from == "pair_losses":
                for name in cfg.gate_config.value_losses:
                    LOSSES.get(name)  # an unknown loss is refused now, with close matches
            if "gate" in names and gate.learnable and gate.learns_from == "answer" and "answer" not in names:
                names.append("answer")  # the gate's target needs the answer losses
                weights["answer"] = 0.0  # computed for the gate, not added to the total
        if "gate" in names and (gate is None or not gate.learnable):
            names.remove("gate")

        qa: Optional[QAModule] = None
        head_path: Optional[str] = None
        separate_head: Optional[nn.Module] = None
        if uses_qa:
            if cfg.answer_mode == "reenter":
                QAModule.check_reenter(chosen)
            qa = QAModule(ds, cfg.dq, infos, mode=cfg.answer_mode, answer_hidden=cfg.answer_hidden)
            if cfg.answer_head == "separate":
                n_out = 1 if task == "binary" else int(logit_shape[-1])
                separate_head = nn.Linear(ds, n_out)
            else:
                try:
                    resolve_module(student, cfg.answer_head)
                except TapPathError as err:
                    raise CommitteeConfigError(f"answer_head: {err} (or set answer_head: separate)") from None
                head_path = cfg.answer_head

        options = dict(cfg.loss_options)
        loss_spec = LossSpec(task=task, ds=ds, teachers=infos, kd_temperature=cfg.kd_temperature)
        losses = {n: build_loss(n, loss_spec, **options.get(n, {})) for n in names}

        committee = cls(
            student, chosen, infos, gate, qa, losses, {n: weights[n] for n in names}, task, logit_shape, cfg,
            head_path=head_path, separate_head=separate_head,
        )
        for module in (committee.gate, committee.qa, committee.losses, committee.separate_head):
            if module is not None:
                module.to(device)
        if qa is not None:  # check the shared head fits the answers' shape now, not mid-run
            with torch.no_grad():
                committee._head(s_out.hidden[:1])
        return committee

    # ------------------------------------------------------------------------------- step
    def forward(self, batch: Batch, step: int) -> CommitteeStepOutput:
        out = self.student(batch)
        labels = batch.labels
        labeled = labeled_rows(labels)  # None unless the step holds transfer rows
        row_weight = None
        if labeled is not None:
            labels = torch.where(labeled, labels, torch.zeros_like(labels))  # placeholders: every label-reading loss is masked there
            row_weight = torch.where(labeled, 1.0, float(self.config.transfer_weight)).to(out.logits.dtype)
        b, k_total = out.logits.shape[0], len(self.teachers)
        teacher_names = [t.name for t in self.teachers]
        teacher_losses = {n: m for n, m in self.losses.items() if m.scope == "teacher"}
        # per loss: (k, rows, per-row values) of each teacher that produced it (no scatter into
        # [B, K] inside the graph: the term is summed straight from the rows that ran)
        cols: dict[str, list[tuple[int, torch.Tensor, torch.Tensor]]] = {n: [] for n in teacher_losses}
        pair_weights: dict[int, torch.Tensor] = {}  # k -> the gate's w on that teacher's rows, gathered once
        answers: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        decision: Optional[GateDecision] = None
        t_logits: Optional[torch.Tensor] = None
        has_logits: Optional[torch.Tensor] = None

        if k_total:
            if self.gate.reads_logits:
                decision = self.gate(out.h0.flatten(1), step, out.logits.detach())
            else:
                decision = self.gate(out.h0.flatten(1), step)
            self.counter.add_batch(b, transfer=0 if labeled is None else int((~labeled).sum()))
            if self.reads_teacher_logits:  # [B, K(, C)] only for the step losses that combine them
                t_logits = out.logits.new_zeros((b, k_total, *self.logit_shape))
                has_logits = torch.zeros(b, k_total, dtype=torch.bool, device=out.logits.device)
            u = self.qa.question.base(out.hidden) if self.qa is not None else None
            for k, teacher in enumerate(self.teachers):
                idx = decision.active[:, k].nonzero(as_tuple=True)[0]
                n = int(idx.numel())
                self.counter.add(k, n)
                # Sharded teachers run collectives: every rank must call them with the same
                # number of rows. ``row_sync`` (set by the distributed loop) returns the max over
                # ranks; shorter ranks pad with row 0 and drop the padding's outputs.
                n_run = self.row_sync(n) if self.row_sync is not None else n
                if n_run == 0:
                    continue
                if n_run > n:
                    self.counter.add_padding(n_run - n)
                run_idx = idx if n_run == n else torch.cat([idx, idx.new_zeros(n_run - n)])
                sub = batch if n_run == b else batch.subset(run_idx.to(labels.device))
                tout = teacher.run(sub)
                if not teacher.logit_target:  # its features teach; its logits are no target
                    tout = TeacherOutput(features=tout.features, logits=None, mask=tout.mask)
                if n == 0:
                    continue
                if n_run > n:  # drop the padding's outputs (and rows, for reenter)
                    tout = TeacherOutput(
                        features=tout.features[:n],
                        logits=None if tout.logits is None else tout.logits[:n],
                        mask=None if tout.mask is None else tout.mask[:n],
                    )
                    sub = batch.subset(idx.to(labels.device))
                if tout.features.shape[0] != n:
                    raise RuntimeError(f"teacher '{teacher.name}' returned {tout.features.shape[0]} rows for {n}")
                if tout.logits is not None:
                    tout.logits = tout.logits.reshape(n, *self.logit_shape).to(out.logits.dtype)
                    if t_logits is not None:
                        t_logits[idx, k] = tout.logits
                        has_logits[idx, k] = True
                whole = n == b  # every row: the step's own tensors, no gather (nor its backward scatter)

                def rows(x: torch.Tensor, idx: torch.Tensor = idx) -> torch.Tensor:
                    # index_select, not x[idx]: its backward is an index_add, where advanced
                    # indexing's is a sorting index_put (same values: each row is gathered once)
                    return x if whole else x.index_select(0, idx.to(x.device))

                answer = answer_hat = None
                if self.qa is not None:
                    answer, answer_hat = self.qa(k, rows(u), tout, teacher, sub)
                    answers[teacher.name] = (idx, answer_hat)
                view = TeacherView(
                    k=k, name=teacher.name, index=idx, logits=rows(out.logits),
                    hidden=rows(out.hidden), labels=rows(labels),
                    teacher=tout, task=self.task, head=self._head, answer=answer, answer_hat=answer_hat,
                )
                for name, module in teacher_losses.items():
                    values = module(view)
                    if values is not None:
                        if labeled is not None:
                            values = values * rows(labeled if module.reads_labels else row_weight).to(values.dtype)
                        cols[name].append((k, idx, values))
                        if k not in pair_weights:
                            pair_weights[k] = rows(decision.weights[:, k])

        terms: dict[str, torch.Tensor] = {}
        for name, columns in cols.items():
            if not columns:
                continue
            # term = mean over samples of sum_k w[i, k] L_k[i], summed from the rows that ran
            terms[name] = sum((pair_weights[k].to(values.dtype) * values).sum() for k, _, values in columns) / b
        per_sample = PairMatrices(cols, b, k_total)  # [B, K] per loss, built when read

        # what each pair adds to the loss, per loss, before the gate's weights (0 where skipped):
        # built only for a gate that learns from it, not on every step of every method
        pair_losses = {}
        if self.gate is not None and self.gate.learns_from == "pair_losses":
            pair_losses = {n: self.weights[n] * m for n, m in per_sample.items() if self.weights.get(n, 0.0) != 0.0}
        ctx = StepContext(
            student=out, labels=labels, task=self.task, decision=decision, gate=self.gate,
            teacher_logits=t_logits, has_logits=has_logits, per_sample=per_sample, pair_losses=pair_losses, labeled=labeled,
        )
        for name, module in self.losses.items():
            if module.scope != "step":
                continue
            value = module(ctx)
            if value is None:
                continue
            if not value.dim():
                terms[name] = value
            elif labeled is None:
                terms[name] = value.mean()
            elif module.reads_labels:  # the mean over the labeled rows: the same scale whatever the transfer share
                terms[name] = (value * labeled).sum() / labeled.sum().clamp_min(1)
            else:
                terms[name] = (value * row_weight).mean()
        ordered = {n: terms[n] for n in self.losses if n in terms}
        self._check_finite(ordered, step)
        loss = sum(self.weights[n] * t for n, t in ordered.items() if self.weights[n] != 0.0)
        if not isinstance(loss, torch.Tensor):  # every weight 0: a zero that still backprops
            loss = out.logits.sum() * 0.0
        return CommitteeStepOutput(
            loss=loss, terms=ordered, student=out,
            active=None if decision is None else decision.active,
            weights=None if decision is None else decision.weights,
            per_sample=per_sample, answers=answers,
        )

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        """The shared head H, looked up at call time (deepcopy-safe, never registered twice)."""
        head = self.separate_head if self.separate_head is not None else resolve_module(self.student, self.head_path or "")
        return head(x).reshape(x.shape[0], *self.logit_shape)

    @staticmethod
    def _check_finite(terms: dict[str, torch.Tensor], step: int) -> None:
        if not terms:
            return
        values = torch.stack([t.detach().float().reshape(()) for t in terms.values()])
        if bool(torch.isfinite(values).all()):  # one host sync per step, not one per term
            return
        for name, value in terms.items():
            if not bool(torch.isfinite(value.detach()).all()):
                raise NonFiniteLossError(step, name, float(value.detach().float()))

    # ------------------------------------------------------------------------------- helpers
    def teacher_forwards(self) -> dict[str, Any]:
        """{"run": pairs run, "dense": K * samples, "samples": samples, "per_teacher": {name: run}}."""
        return self.counter.as_dict()

    def reset_teacher_forwards(self) -> None:
        self.counter.reset()

    FROZEN_PREFIX = "teachers."  # the frozen teachers' keys: never trained, never checkpointed

    @classmethod
    def is_frozen_key(cls, key: str) -> bool:
        """True for parameter/state keys of the frozen teachers, also inside a wrapper (DMP, DDP
        prefix the keys): the optimisers and DCP ask the committee, not a copy of its names."""
        return key.startswith(cls.FROZEN_PREFIX) or f".{cls.FROZEN_PREFIX}" in key

    def named_trainable_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        for name, p in self.named_parameters():
            if p.requires_grad and not self.is_frozen_key(name):
                yield name, p

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Student + distillation module parameters (what the optimiser gets)."""
        return [p for _, p in self.named_trainable_parameters()]

    def distill_state_dict(self) -> dict[str, torch.Tensor]:
        """State without the frozen teachers (they are rebuilt from their own checkpoints)."""
        return {k: v for k, v in self.state_dict().items() if not self.is_frozen_key(k)}

    def load_distill_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [m for m in missing if not self.is_frozen_key(m)]
        if missing or unexpected:
            raise KeyError(f"distill state mismatch: missing {missing}, unexpected {list(unexpected)}")


# ----------------------------------------------------------------------------------- build helpers
def _check_teachers(teachers: Sequence[TeacherAdapter]) -> None:
    seen: set[str] = set()
    for t in teachers:
        if not isinstance(t, TeacherAdapter):
            raise TypeError(f"teachers must be TeacherAdapter instances, got {type(t).__name__}")
        if t.name in seen:
            raise CommitteeConfigError(f"two teachers are named '{t.name}'")
        seen.add(t.name)


def _probe_student(student: nn.Module, batch: Batch) -> StudentOutput:
    """One no-grad eval-mode forward (eval: BatchNorm statistics must not move)."""
    was_training = student.training
    student.eval()
    try:
        with torch.no_grad():
            out = student(batch)
    finally:
        student.train(was_training)
    if not isinstance(out, StudentOutput):
        raise TypeError(f"the student must return StudentOutput(logits, hidden, h0), got {type(out).__name__}")
    if out.hidden.dim() != 2:
        raise ValueError(f"student hidden h must be [B, ds], got shape {tuple(out.hidden.shape)}")
    return out


def _infer_task(task: str, out: StudentOutput, labels: torch.Tensor) -> str:
    if task == "auto":
        task = "binary" if out.logits.dim() == 1 else "multiclass"
    if task == "binary" and (out.logits.dim() != 1 or not labels.is_floating_point()):
        raise CommitteeConfigError(f"binary task needs logits [B] and float 0/1 labels; got logits {tuple(out.logits.shape)}, labels {labels.dtype}")
    if task == "multiclass" and (out.logits.dim() != 2 or labels.is_floating_point()):
        raise CommitteeConfigError(f"multiclass task needs logits [B, C] and long labels; got logits {tuple(out.logits.shape)}, labels {labels.dtype}")
    return task


def _choose_teachers(spec: MethodSpec, cfg: CommitteeConfig, teachers: Sequence[TeacherAdapter]) -> list[TeacherAdapter]:
    if spec.teachers == "none":
        return []
    if spec.teachers == "single":
        by_name = {t.name: t for t in teachers}
        if cfg.teacher is None:
            if len(teachers) == 1:
                return list(teachers)
            raise CommitteeConfigError(f"method '{cfg.method}' distils from one teacher: set teacher to one of {sorted(by_name)}")
        if cfg.teacher not in by_name:
            close = difflib.get_close_matches(cfg.teacher, list(by_name), n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownNameError(f"unknown teacher '{cfg.teacher}' for method '{cfg.method}'.{hint} Teachers given: {', '.join(sorted(by_name))}")
        return [by_name[cfg.teacher]]
    return list(teachers)


def _probe_teacher(teacher: TeacherAdapter, rows: Batch, logit_shape: tuple[int, ...]) -> None:
    out = teacher.probe(rows)
    n = len(rows)
    if out.logits is not None and out.logits.numel() != n * math.prod(logit_shape):
        raise CommitteeConfigError(
            f"teacher '{teacher.name}' logits have shape {tuple(out.logits.shape)}; the student's are [B{''.join(', ' + str(s) for s in logit_shape)}]"
        )

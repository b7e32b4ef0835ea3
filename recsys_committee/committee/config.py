"""Typed settings of the committee core, and its error types.

Why plain dataclasses: the YAML loader in ``train/config.py`` fills them field by field and
rejects unknown keys, so every knob of the method (docs/METHOD.md: every choice of the method is a config key)
is visible here with its default, and nothing is read from an untyped dict deep in the code.
Names that point into registries (``method``, ``gate``, loss names) are checked when the
committee is built, with the close matches in the error.
"""

from __future__ import annotations

from recsys_committee.errors import UserError

import math
from dataclasses import dataclass, field
from typing import Any, Optional

ANSWER_MODES = ("attend", "reenter")
TASKS = ("auto", "binary", "multiclass")

# Why a module-level dict: a YAML file that sets only ``weights: {kd: 0.5}`` replaces the whole
# dict field, so ``Committee.build`` merges the user's dict over these defaults.
DEFAULT_WEIGHTS: dict[str, float] = {
    "task": 1.0,
    "kd": 1.0,
    "answer": 0.5,
    "align": 1.0,
    "gate": 0.1,
    "feature_kd": 1.0,
    "avg_kd": 1.0,
    "camkd": 1.0,
}


class CommitteeConfigError(UserError, ValueError):
    """The committee was asked for something it cannot build (a bad value or combination)."""


class ReenterNotSupportedError(CommitteeConfigError, NotImplementedError):
    """``answer_mode: reenter`` names a teacher whose adapter cannot take a question token.

    Derives from NotImplementedError (the adapter lacks the feature) and from the config error
    (the fix is in the config: use ``answer_mode: attend`` or another teacher)."""


class NonFiniteLossError(UserError, FloatingPointError):
    """A loss term is NaN or infinite; names the step and the term so a run fails where it broke."""

    def __init__(self, step: int, term: str, value: float = float("nan"), last_good: str | None = None) -> None:
        self.step = step
        self.term = term
        self.value = value
        self.last_good = last_good
        where = f"; the last good checkpoint is {last_good}" if last_good else "; no checkpoint was written before it"
        super().__init__(f"non-finite loss at step {step}: term '{term}' = {value}{where} (lower optim.lr or check the data)")

    def with_last_good(self, path: str | None) -> "NonFiniteLossError":
        """The same error, now saying where the last good checkpoint is (the runner knows, the step does not)."""
        return NonFiniteLossError(self.step, self.term, self.value, path)


@dataclass
class GateConfig:
    """The gates' settings (docs/METHOD.md "Gates"; the budget gates random / sampled / value
    read skip_target and reweight)."""

    rho: float = 0.5  # active if g_k >= rho * max_j g_j (0 = dense, 1 = top-1 only)
    tau_g: float = 1.0  # softmax temperature of the gate
    tau_t: float = 1.0  # temperature of the soft-min target over answer losses
    eps: float = 0.05  # exploration: each (sample, teacher) pair also runs with prob eps (training)
    warmup_steps: int = 200  # dense routing for the first steps, while the gate knows nothing
    beta: float = 0.01  # weight of the switch-style load-balance term inside the gate loss
    hidden: int = 64  # hidden width of the gate MLP G (0 = a single linear layer)
    # budget gates (random, sampled, value): the share of (sample, teacher) pairs skipped (random,
    # value: from the first step; sampled: after the warm-up)
    skip_target: float = 0.3
    # budget gates: weight a kept pair's losses by 1/keep-probability (an unbiased estimate of the
    # dense loss) instead of renormalising the weights over the pairs that ran
    reweight: bool = True
    # value gate: which weighted per-pair losses make a pair's value (what it teaches the student:
    # KD and align; the answer loss trains the QA module and mostly measures how hard the sample is)
    value_losses: tuple[str, ...] = ("kd", "align")
    # value gate: "top" runs the highest predicted values up to the budget; "sample" keeps each pair
    # with probability proportional to its predicted value (capacity over the batch, floor eps),
    # reweighted by 1/keep-probability: unbiased, the budget spent where the loss is
    value_selection: str = "top"
    # budget gates random and value (top): skip at least skip_target of the step's pairs by
    # construction (ceil(skip_target B K) of them, drawn without replacement) instead of each pair
    # with probability skip_target (the budget only in expectation: 29.98% at 0.3 over 5 seeds)
    exact_budget: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.rho <= 1.0:
            raise CommitteeConfigError(f"gate rho must be in [0, 1], got {self.rho}")
        if not 0.0 <= self.eps <= 1.0:
            raise CommitteeConfigError(f"gate eps must be in [0, 1], got {self.eps}")
        for name in ("tau_g", "tau_t"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise CommitteeConfigError(f"gate {name} must be > 0, got {value}")
        if self.value_selection not in ("top", "sample"):
            raise CommitteeConfigError(f"gate value_selection must be 'top' or 'sample', got '{self.value_selection}'")
        self.value_losses = tuple(self.value_losses)
        if not self.value_losses:
            raise CommitteeConfigError("gate value_losses must name at least one loss")
        if not 0.0 <= self.skip_target < 1.0:
            raise CommitteeConfigError(f"gate skip_target must be in [0, 1), got {self.skip_target}")
        if self.warmup_steps < 0 or self.hidden < 0 or self.beta < 0:
            raise CommitteeConfigError("gate warmup_steps, hidden and beta must be >= 0")


@dataclass
class CommitteeConfig:
    """What to distil and how. ``method`` picks the losses and teachers (``baselines.py``)."""

    # no_kd | logit_kd | feature_kd | avg_kd | camkd | diverse_distill
    method: str = "diverse_distill"
    # the teacher of the single-teacher baselines (logit_kd, feature_kd), by adapter name
    teacher: Optional[str] = None
    answer_mode: str = "attend"  # attend | reenter
    dq: int = 64  # width of the question space (W_u: ds -> dq, E: K x dq)
    answer_hidden: Optional[int] = None  # hidden width of the Answer Augmenter MLP (None = ds)
    # the shared head H of the answer loss: a module path in the student, or "separate"
    answer_head: str = "head"
    gate: str = "importance"  # registry name: importance | dense | random | sampled | value | unic (diverse_distill only)
    gate_config: GateConfig = field(default_factory=GateConfig)
    # loss weights by loss name; merged over DEFAULT_WEIGHTS; a weight of 0 turns a loss off
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    kd_temperature: float = 2.0
    # override the method's loss list (ablations), e.g. [task, kd, answer, gate]
    losses: Optional[list[str]] = None
    # extra keyword arguments of a loss builder, by loss name, e.g. {feature_kd: {normalize: true}}
    loss_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    task: str = "auto"  # auto | binary | multiclass (auto: logits [B] -> binary, [B, C] -> multiclass)
    # train on the data's transfer rows too (rows without a label: the data spec's ``transfer:``);
    # every loss that reads a label skips them, every loss that reads teachers runs on them
    transfer: bool = False
    # weight of a transfer row's teacher-reading losses relative to a labeled row's
    transfer_weight: float = 1.0

    def __post_init__(self) -> None:
        if not (self.transfer_weight >= 0 and math.isfinite(self.transfer_weight)):
            raise CommitteeConfigError(f"transfer_weight must be >= 0, got {self.transfer_weight}")
        if self.answer_mode not in ANSWER_MODES:
            raise CommitteeConfigError(f"answer_mode must be one of {ANSWER_MODES}, got '{self.answer_mode}'")
        if self.task not in TASKS:
            raise CommitteeConfigError(f"task must be one of {TASKS}, got '{self.task}'")
        if self.dq <= 0:
            raise CommitteeConfigError(f"dq must be > 0, got {self.dq}")
        if not (self.kd_temperature > 0 and math.isfinite(self.kd_temperature)):
            raise CommitteeConfigError(f"kd_temperature must be > 0, got {self.kd_temperature}")
        if isinstance(self.gate_config, dict):  # tolerate a plain dict from hand-written code
            self.gate_config = GateConfig(**self.gate_config)

    def merged_weights(self) -> dict[str, float]:
        return {**DEFAULT_WEIGHTS, **{k: float(v) for k, v in self.weights.items()}}

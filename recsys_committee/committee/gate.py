"""Which teachers run on which samples (docs/METHOD.md "Gates"), and the forward counter.

Why the gate decides BEFORE any teacher runs: the point is to skip forward passes, so the
decision may only use what the student computed anyway (h0, stop-gradient). The gate learns
only from its own loss (a soft-min of the answer losses of the teachers that ran): the weights
w it hands to the distillation losses are detached, so the student's losses cannot be lowered
by steering the gate towards the teacher that is easiest to imitate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from recsys_committee.committee.config import GateConfig
from recsys_committee.registry import Registry


@dataclass
class GateDecision:
    active: torch.Tensor  # [B, K] bool: the pair (sample, teacher) runs
    weights: torch.Tensor  # [B, K] float, detached: g renormalised over the active set (0 elsewhere)
    logits: Optional[torch.Tensor] = None  # [B, K] G(sg(h0)), with grad to the gate
    probs: Optional[torch.Tensor] = None  # [B, K] softmax(logits / tau_g)
    selected: Optional[torch.Tensor] = None  # [B, K] bool: chosen by the gate itself (before
    # warm-up, exploration and always_on), what the load-balance term measures


class Gate(nn.Module):
    """Interface: ``forward(h0, step) -> GateDecision`` and ``loss(decision, answer_losses)``.

    A gate that also reads the student's (detached) logits sets ``reads_logits``; the committee
    then calls ``forward(h0, step, logits)``. A gate that learns from what each pair realised (its
    weighted teacher-scope losses) instead of the answer losses sets ``learns_from =
    "pair_losses"``; ``loss`` then gets {loss name: weight * [B, K] per-pair loss}."""

    learnable = False
    reads_logits = False
    learns_from = "answer"  # "answer" | "pair_losses"

    def loss(self, decision: GateDecision, answer_losses: torch.Tensor) -> Optional[torch.Tensor]:
        """Scalar gate loss, or None when the gate has nothing to learn."""
        return None


GATES: Registry[Callable[..., Gate]] = Registry("gate")
register_gate = GATES.register


def list_gates() -> list[str]:
    return GATES.names()


def dense_decision(like: torch.Tensor, k: int, **extra: Any) -> GateDecision:
    """Every teacher on every sample of ``like`` ([B, ...]) at weight 1/K: the dense gate, and
    what the budget gates route during the warm-up and at evaluation."""
    b = like.shape[0]
    active = torch.ones(b, k, dtype=torch.bool, device=like.device)
    return GateDecision(active=active, weights=torch.full((b, k), 1.0 / k, dtype=like.dtype, device=like.device), selected=active, **extra)


class DenseGate(Gate):
    """Every teacher on every sample, uniform weights (DiverseDistill dense; multi-teacher
    baselines)."""

    def __init__(self, n_teachers: int) -> None:
        super().__init__()
        self.n_teachers = n_teachers

    def forward(self, h0: torch.Tensor, step: int) -> GateDecision:
        return dense_decision(h0, self.n_teachers)


class ImportanceGate(Gate):
    """g = softmax(G(sg(h0)) / tau_g); active = {g_k >= rho max g} ∪ always_on ∪ exploration.

    Training: dense for ``warmup_steps``, then sparse with each pair also drawn with prob eps.
    Eval: deterministic (no warm-up, no exploration): what a converged gate would route.
    """

    learnable = True
    target_sign = -1.0  # the target is softmax(sign * L_ans / tau_t): -1 prefers the best answer

    def __init__(self, n_teachers: int, d0: int, always_on: Sequence[bool], config: GateConfig) -> None:
        super().__init__()
        self.config = config
        if config.hidden:
            self.net: nn.Module = nn.Sequential(nn.Linear(d0, config.hidden), nn.ReLU(), nn.Linear(config.hidden, n_teachers))
        else:
            self.net = nn.Linear(d0, n_teachers)
        self.register_buffer("always_on", torch.tensor(list(always_on), dtype=torch.bool), persistent=False)
        if self.always_on.numel() != n_teachers:
            raise ValueError("always_on must have one flag per teacher")

    def forward(self, h0: torch.Tensor, step: int) -> GateDecision:
        cfg = self.config
        logits = self.net(h0.detach())
        probs = torch.softmax(logits / cfg.tau_g, dim=-1)
        g = probs.detach()
        selected = g >= cfg.rho * g.max(dim=-1, keepdim=True).values
        active = selected | self.always_on
        if self.training:
            if step < cfg.warmup_steps:
                active = torch.ones_like(active)
            elif cfg.eps > 0:
                active = active | (torch.rand(active.shape, device=active.device) < cfg.eps)
        masked = g * active
        weights = masked / masked.sum(dim=-1, keepdim=True)
        return GateDecision(active=active, weights=weights, logits=logits, probs=probs, selected=selected)

    def loss(self, decision: GateDecision, answer_losses: torch.Tensor) -> Optional[torch.Tensor]:
        """CE(p*, g restricted to the teachers that ran) + beta * load balance.

        p*_k = softmax(-L_ans,k / tau_t) over the teachers that ran for the sample (target,
        no grad). A sample with a single teacher gives zero CE (nothing to compare), which is
        why exploration keeps sending a few extra pairs.
        """
        cfg = self.config
        assert decision.logits is not None and decision.selected is not None
        ran = decision.active
        neg_inf = torch.tensor(float("-inf"), dtype=decision.logits.dtype, device=ran.device)
        target = torch.softmax(torch.where(ran, self.target_sign * answer_losses.detach() / cfg.tau_t, neg_inf), dim=-1)
        log_g = torch.log_softmax(torch.where(ran, decision.logits / cfg.tau_g, neg_inf), dim=-1)
        ce = -torch.where(ran, target * log_g, torch.zeros_like(log_g)).sum(dim=-1).mean()
        return ce + cfg.beta * load_balance(decision.probs, decision.selected)


def load_balance(probs: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    """Switch-Transformer balance: K * sum_k f_k P_k, f_k = share of the gate's selections that
    went to k (no grad), P_k = mean gate probability of k. Equals 1 when balanced."""
    k = probs.shape[-1]
    counts = selected.to(probs.dtype).sum(dim=0)
    f = counts / counts.sum().clamp_min(1.0)
    return k * (f.detach() * probs.mean(dim=0)).sum()


@register_gate("importance")
def importance_gate(n_teachers: int, d0: int, always_on: Sequence[bool], config: GateConfig) -> Gate:
    return ImportanceGate(n_teachers, d0, always_on, config)


class UnicGate(ImportanceGate):
    """Ablation after UNIC (ECCV 2024, "teacher dropping"): route each sample to the teacher
    whose answer is the WORST (target softmax(+L_ans / tau_t)), the opposite of the importance
    gate's rule: where the student imitates a teacher least well, that teacher has the most
    left to teach. Everything else (warm-up, rho, exploration, load balance) as ``importance``."""

    target_sign = 1.0


@register_gate("unic")
def unic_gate(n_teachers: int, d0: int, always_on: Sequence[bool], config: GateConfig) -> Gate:
    return UnicGate(n_teachers, d0, always_on, config)


@register_gate("dense")
def dense_gate(n_teachers: int, d0: int, always_on: Sequence[bool], config: GateConfig) -> Gate:
    return DenseGate(n_teachers)


class RandomGate(Gate):
    """The baseline every learned gate must beat at the same budget: after the dense warm-up,
    each (sample, teacher) pair is skipped with probability ``skip_target`` (always-on teachers
    always run). With ``reweight`` a kept pair's weight is (1/K) / keep-probability, so the
    expected weighted loss equals the dense one (unbiased; a sample may get no teacher at all,
    or weights summing above 1); without it the weights are renormalised over the pairs that
    ran (1/|active|), as the importance gate does. With ``exact_budget`` exactly
    ceil(skip_target B K) pairs are skipped per step (``exact_skip``): the budget is a floor on
    every step, not an expectation, and every free pair still has the same keep probability.

    Why it matters: dropping pairs at random is unbiased in expectation, where a learned top-1
    rule drops the same teacher for similar samples, a systematic bias (issue: "random skip
    0.7202 vs learned gate 0.7168 at the same 32-35% skipped"). Eval routes densely: the gate
    only shapes training."""

    def __init__(self, n_teachers: int, always_on: Sequence[bool], config: GateConfig) -> None:
        super().__init__()
        self.config = config
        self.n_teachers = n_teachers
        self.register_buffer("always_on", torch.tensor(list(always_on), dtype=torch.bool), persistent=False)

    def forward(self, h0: torch.Tensor, step: int) -> GateDecision:
        if not self.training or step < self.config.warmup_steps:
            return dense_decision(h0, self.n_teachers)
        if self.config.exact_budget:
            active, keep = exact_skip(h0.shape[0], self.always_on, self.config.skip_target, h0.device)
        else:
            keep = uniform_keep(h0.shape[0], self.always_on, self.config.skip_target, h0.device)
            active = torch.rand(keep.shape, device=h0.device) < keep
        return GateDecision(active=active, weights=budget_weights(active, keep, self.config.reweight).to(h0.dtype), selected=active)


def uniform_keep(b: int, always_on: torch.Tensor, skip_target: float, device: torch.device) -> torch.Tensor:
    """[B, K] probability that each pair runs at random under the budget (1 for always-on teachers):
    the random gate, and the value gate while it learns."""
    keep = torch.full((b, always_on.numel()), 1.0 - skip_target, device=device)
    return torch.where(always_on.to(device), torch.ones_like(keep), keep)


def skipped_pairs(n_pairs: int, skip_target: float) -> int:
    """How many of ``n_pairs`` an exact budget skips: ceil(skip_target n), so the share skipped is
    never below the target (the 1e-9 keeps 0.3 * 1000 = 300.00000000000006 at 300)."""
    return math.ceil(skip_target * n_pairs - 1e-9)


def exact_skip(b: int, always_on: torch.Tensor, skip_target: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """([B, K] active, [B, K] keep probability): exactly ``skipped_pairs(B K)`` pairs skipped,
    drawn uniformly without replacement among the pairs that are not always-on (all of those if
    there are fewer). Each such pair runs with probability 1 - n_skip / n_free, the same for
    every pair, so the 1/keep reweighting stays unbiased."""
    k = always_on.numel()
    free = ~always_on.to(device).expand(b, k).reshape(-1)
    free_index = free.nonzero(as_tuple=True)[0]
    n_skip = min(skipped_pairs(b * k, skip_target), free_index.numel())
    active = torch.ones(b * k, dtype=torch.bool, device=device)
    active[free_index[torch.randperm(free_index.numel(), device=device)[:n_skip]]] = False
    keep_free = 1.0 - n_skip / max(free_index.numel(), 1)
    keep = torch.where(free, torch.full((b * k,), keep_free, device=device), torch.ones(b * k, device=device))
    return active.reshape(b, k), keep.reshape(b, k)


def budget_weights(active: torch.Tensor, keep: torch.Tensor, reweight: bool) -> torch.Tensor:
    """Per-pair loss weights of a budget gate: (1/K)/keep on the pairs that ran (an unbiased
    estimate of the dense 1/K weights), or 1/|active| over them (0 for a sample with none)."""
    k = active.shape[1]
    if reweight:
        return torch.where(active, (1.0 / k) / keep, torch.zeros_like(keep))
    ran = active.to(keep.dtype)
    return ran / ran.sum(dim=1, keepdim=True).clamp_min(1.0)


class SampledGate(ImportanceGate):
    """The learned gate's probabilities as keep probabilities under the budget, unbiased.

    After the warm-up each pair runs with probability p_k = clamp(c g_k, floor, 1), c chosen per
    sample so that the p_k sum to K (1 - skip_target) (a teacher clamped at 1 hands its excess to
    the others: the budget holds however peaked g is; always-on teachers p = 1) and a
    kept pair's losses are weighted by (1/K) / p_k (``reweight``), so the expected loss is the
    dense one whatever the gate learned: a confident gate spends the budget where it expects
    the better answers, a wrong one costs variance, not bias. ``floor`` (= eps) keeps every
    teacher sampled so its answers keep training the gate. Trained as the importance gate is."""

    def forward(self, h0: torch.Tensor, step: int) -> GateDecision:
        cfg = self.config
        logits = self.net(h0.detach())
        probs = torch.softmax(logits / cfg.tau_g, dim=-1)
        g = probs.detach()
        k = g.shape[1]
        if not self.training or step < cfg.warmup_steps:
            return dense_decision(g, k, logits=logits, probs=probs)
        keep = budget_keep(g, k * (1.0 - cfg.skip_target), floor=max(cfg.eps, 1e-3))
        keep = torch.where(self.always_on, torch.ones_like(keep), keep)
        active = torch.rand(keep.shape, device=keep.device) < keep
        return GateDecision(active=active, weights=budget_weights(active, keep, cfg.reweight), logits=logits, probs=probs, selected=active)


def budget_keep(g: torch.Tensor, total: float, floor: float, iterations: int = 30) -> torch.Tensor:
    """[B, K] keep probabilities clamp(c g, floor, 1) summing to ``total`` per row: c found by
    bisection (the sum is monotone in c), 30 halvings of [0, 2 total / min g]."""
    lo = torch.zeros(g.shape[0], 1, dtype=g.dtype, device=g.device)
    hi = 2.0 * total / g.clamp_min(1e-12).min(dim=1, keepdim=True).values
    for _ in range(iterations):
        mid = (lo + hi) / 2
        over = (mid * g).clamp(floor, 1.0).sum(dim=1, keepdim=True) > total
        hi, lo = torch.where(over, mid, hi), torch.where(over, lo, mid)
    return (lo * g).clamp(floor, 1.0)


@register_gate("sampled")
def sampled_gate(n_teachers: int, d0: int, always_on: Sequence[bool], config: GateConfig) -> Gate:
    return SampledGate(n_teachers, d0, always_on, config)


@register_gate("random")
def random_gate(n_teachers: int, d0: int, always_on: Sequence[bool], config: GateConfig) -> Gate:
    return RandomGate(n_teachers, always_on, config)


def confidence_features(logits: torch.Tensor) -> torch.Tensor:
    """[B, 3] what the student's own prediction says about how much a teacher could add:
    entropy, top probability and the margin between the top two classes (a binary logit z is
    the two classes [0, z]). Detached: the gate never steers the student."""
    z = logits.detach().float()
    if z.dim() == 1:
        z = torch.stack([torch.zeros_like(z), z], dim=1)
    z = z.flatten(1)
    log_p = torch.log_softmax(z, dim=1)
    p = log_p.exp()
    top2 = p.topk(min(2, p.shape[1]), dim=1).values
    margin = top2[:, 0] - (top2[:, 1] if top2.shape[1] > 1 else 0.0)
    return torch.stack([-(p * log_p).sum(dim=1), top2[:, 0], margin], dim=1)


class ValueGate(Gate):
    """Spend the budget on the pairs worth the most, chosen across the whole batch.

    A regressor V(sg(h0), student confidence) -> [B, K] predicts each pair's value: the log of
    what the pair teaches the student (the weighted sum of its ``value_losses``, KD + align by
    default: the student-teacher disagreement), learnt from the pairs that ran. Why this signal:
    a pair whose losses would be small carries little gradient, so skipping it loses little (the
    student-state routes of UNIX, Dynamic KD, Robust Active Distillation); and it is capacity-style
    over the batch, not a per-sample top-1: a sample the student already matches may lose every
    teacher while a hard one keeps all of them.

    ``value_selection``:
      * ``top``: the (1 - skip_target) B K highest predicted pairs run at the dense weight 1/K (what
        is skipped is judged worth ~0), an ``eps`` share of the budget going to random other pairs
        so the regressor keeps seeing the pairs it ranks low;
      * ``sample``: each pair runs with probability p = clamp(c v, eps', 1), c set so the p sum to
        the budget over the batch, and is weighted (1/K)/p: an unbiased estimate of the dense loss
        whose variance is lowest when p follows the pairs' losses (importance sampling).
    Warm-up (``warmup_steps``): random pairs at the budget, reweighted (unbiased, and an unbiased
    sample for the regressor), so the budget holds from step 0. Always-on pairs count in the
    budget. Eval routes densely: the gate only shapes training."""

    learnable = True
    reads_logits = True
    learns_from = "pair_losses"
    n_confidence = 3

    def __init__(self, n_teachers: int, d0: int, always_on: Sequence[bool], config: GateConfig) -> None:
        super().__init__()
        self.config = config
        self.n_teachers = n_teachers
        hidden = config.hidden or 64
        self.net = nn.Sequential(nn.Linear(d0 + self.n_confidence, hidden), nn.ReLU(), nn.Linear(hidden, n_teachers))
        self.register_buffer("always_on", torch.tensor(list(always_on), dtype=torch.bool), persistent=False)

    def predict(self, h0: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """[B, K] predicted log value of each pair."""
        x = torch.cat([h0.detach(), confidence_features(logits).to(h0.dtype)], dim=1)
        return self.net(x)

    def forward(self, h0: torch.Tensor, step: int, logits: Optional[torch.Tensor] = None) -> GateDecision:
        cfg = self.config
        k = self.n_teachers
        if logits is None:
            raise ValueError("the value gate reads the student's logits: call gate(h0, step, logits)")
        predicted = self.predict(h0, logits)
        if not self.training:
            return dense_decision(h0, k, logits=predicted)
        b = h0.shape[0]
        always = self.always_on.to(h0.device).expand(b, k)
        budget = b * k * (1.0 - cfg.skip_target)
        if step < cfg.warmup_steps:
            keep = uniform_keep(b, self.always_on, cfg.skip_target, h0.device)
        elif cfg.value_selection == "sample":
            value = predicted.detach().float().clamp(max=30.0).exp()
            # values span decades: 60 halvings (the scale found to ~1e-9 of its bracket)
            keep = budget_keep(value.reshape(1, -1), budget, floor=max(cfg.eps, 1e-3), iterations=60).reshape(b, k)
            keep = torch.where(always, torch.ones_like(keep), keep)
        else:
            n_run = b * k - skipped_pairs(b * k, cfg.skip_target) if cfg.exact_budget else round(budget)
            active = capacity_select(predicted.detach(), always, budget=n_run, explore=cfg.eps)
            return GateDecision(active=active, weights=active.to(h0.dtype) / k, logits=predicted, selected=active)
        active = torch.rand(keep.shape, device=h0.device) < keep
        return GateDecision(active=active, weights=budget_weights(active, keep, cfg.reweight).to(h0.dtype), logits=predicted, selected=active)

    def loss(self, decision: GateDecision, pair_losses: dict[str, torch.Tensor]) -> Optional[torch.Tensor]:
        """Mean squared error of the predicted log value on the pairs that ran."""
        assert decision.logits is not None
        ran = decision.active
        parts = [pair_losses[n] for n in self.config.value_losses if n in pair_losses]
        if not parts or not bool(ran.any()):
            return None  # none of the value losses ran this step: nothing to regress
        target = torch.log(sum(parts).detach().float().clamp_min(1e-6))
        return ((decision.logits.float() - target) ** 2)[ran].mean()


def capacity_select(score: torch.Tensor, always: torch.Tensor, budget: int, explore: float) -> torch.Tensor:
    """[B, K] bool: the always-on pairs, then the highest-``score`` pairs of the whole batch,
    ``explore`` of the remaining budget given to uniformly random other pairs; exactly
    max(budget, #always-on) pairs in all."""
    flat_always = always.reshape(-1)
    n_always = int(flat_always.sum())
    free = max(budget - n_always, 0)
    n_random = int(round(explore * free))
    n_top = free - n_random
    order = torch.where(flat_always, torch.full_like(score.reshape(-1), float("inf")), score.reshape(-1)).argsort(descending=True)
    chosen = torch.zeros_like(flat_always)
    chosen[order[: n_always + n_top]] = True
    if n_random:
        rest = (~chosen).nonzero(as_tuple=True)[0]
        chosen[rest[torch.randperm(rest.numel(), device=rest.device)[:n_random]]] = True
    return chosen.reshape(always.shape)


@register_gate("value")
def value_gate(n_teachers: int, d0: int, always_on: Sequence[bool], config: GateConfig) -> Gate:
    return ValueGate(n_teachers, d0, always_on, config)


class ForwardCounter:
    """Exact counts of teacher-sample forwards: run vs dense (every teacher on every sample).

    Why integers kept on the host: "~30% fewer forwards" is a claim about counts, so it is
    measured, not estimated from gate probabilities.
    """

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self.reset()

    def reset(self) -> None:
        self.samples = 0
        self.transfer_samples = 0  # of ``samples``: rows without a label (transfer rows)
        self.per_teacher = {n: 0 for n in self.names}
        self.padding = 0  # rows run only to keep ranks in step (distributed); not in ``run``

    def add_batch(self, batch_size: int, transfer: int = 0) -> None:
        """``transfer``: how many of the batch's rows are transfer rows (no label)."""
        self.samples += int(batch_size)
        self.transfer_samples += int(transfer)

    def add(self, k: int, n_rows: int) -> None:
        self.per_teacher[self.names[k]] += int(n_rows)

    def add_padding(self, n_rows: int) -> None:
        self.padding += int(n_rows)

    def as_dict(self) -> dict:
        run = sum(self.per_teacher.values())
        return {
            "run": run,
            "dense": self.samples * len(self.names),
            "samples": self.samples,
            "labeled_samples": self.samples - self.transfer_samples,
            "transfer_samples": self.transfer_samples,
            "per_teacher": dict(self.per_teacher),
            "padding": self.padding,
        }

    def totals(self) -> list[int]:
        """[samples, padding, per teacher..., transfer samples] (the transfer count last, so
        totals saved before it existed still resume)."""
        return [self.samples, self.padding, *self.per_teacher.values(), self.transfer_samples]

    def add_totals(self, totals: list[int]) -> None:
        """Add counts saved by ``totals`` (a resumed run continues counting)."""
        self.samples += int(totals[0])
        self.padding += int(totals[1])
        k = len(self.names)
        for name, n in zip(self.names, totals[2:2 + k]):
            self.per_teacher[name] += int(n)
        if len(totals) > 2 + k:
            self.transfer_samples += int(totals[2 + k])

    def reduce(self, sum_ints: Callable[[list[int]], list[int]]) -> None:
        """Replace the counts by their sum over ranks (``sum_ints`` is a collective)."""
        totals = sum_ints(self.totals())
        k = len(self.names)
        self.samples, self.padding = totals[0], totals[1]
        self.per_teacher = dict(zip(self.names, totals[2:2 + k]))
        self.transfer_samples = totals[2 + k]

"""Method -> which teachers run, how they are routed, which losses apply.

Why a table and not branches in the committee: every baseline of docs/METHOD.md runs in the same
harness (same student, data, loop, counters); only this spec differs, so a comparison can
never be skewed by a second code path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from recsys_committee.registry import Registry


@dataclass(frozen=True)
class MethodSpec:
    losses: tuple[str, ...]
    teachers: str  # "none" | "single" (cfg.teacher) | "all" | "with_logits" (all that have a task head)
    uses_qa: bool = False
    gated: bool = False  # True: cfg.gate routes; False: dense (every chosen teacher on every sample)


METHODS: Registry[Callable[[], MethodSpec]] = Registry("method")
register_method = METHODS.register


def list_methods() -> list[str]:
    return METHODS.names()


def method_spec(name: str) -> MethodSpec:
    return METHODS.get(name)()


@register_method("no_kd")
def _no_kd() -> MethodSpec:
    return MethodSpec(losses=("task",), teachers="none")


@register_method("logit_kd")
def _logit_kd() -> MethodSpec:
    return MethodSpec(losses=("task", "kd"), teachers="single")


@register_method("feature_kd")
def _feature_kd() -> MethodSpec:
    return MethodSpec(losses=("task", "feature_kd"), teachers="single")


@register_method("avg_kd")
def _avg_kd() -> MethodSpec:
    return MethodSpec(losses=("task", "avg_kd"), teachers="with_logits")


@register_method("camkd")
def _camkd() -> MethodSpec:
    return MethodSpec(losses=("task", "camkd"), teachers="with_logits")


@register_method("diverse_distill")
def _diverse_distill() -> MethodSpec:
    # "DiverseDistill dense" is this method with gate: dense
    return MethodSpec(losses=("task", "kd", "answer", "align", "gate"), teachers="all", uses_qa=True, gated=True)

"""Config mistakes fail at build time with the registered names; bad numbers fail loudly."""

import pytest
import torch

from committee_toys import MLPTeacher, TransformerTeacher
from recsys_committee.committee import (
    GATES,
    LOSSES,
    Committee,
    CommitteeConfig,
    CommitteeConfigError,
    GateConfig,
    NonFiniteLossError,
    ReenterNotSupportedError,
)
from recsys_committee.registry import UnknownNameError


@pytest.mark.parametrize(
    "cfg, expect",
    [
        (CommitteeConfig(gate="importnce"), ["importance", "dense"]),
        (CommitteeConfig(method="diverse_distil"), ["diverse_distill", "no_kd", "camkd"]),
        (CommitteeConfig(losses=["task", "algn"]), ["align", "feature_kd"]),
        (CommitteeConfig(weights={"kd_": 1.0}), ["'kd'"]),
        (CommitteeConfig(method="logit_kd", teacher="tfn"), ["'tfm'", "mlp2"]),
    ],
)
def test_unknown_names_list_registered_ones(cfg, expect, student, teachers, batch):
    with pytest.raises(UnknownNameError) as err:
        Committee.build(student, teachers, batch, cfg)
    for name in expect:
        assert name in str(err.value)


def test_registries_list_their_names():
    assert {"importance", "dense"} <= set(GATES.names())
    assert {"task", "kd", "answer", "align", "gate", "feature_kd", "avg_kd", "camkd"} <= set(LOSSES.names())
    with pytest.raises(UnknownNameError, match="camkd"):
        LOSSES.get("ca_mkd")


def test_reenter_on_a_teacher_that_cannot_fails_at_build(student, batch):
    teachers = [TransformerTeacher(6, name="tfm"), MLPTeacher(6, name="mlp")]
    with pytest.raises(ReenterNotSupportedError, match="'mlp'") as err:
        Committee.build(student, teachers, batch, CommitteeConfig(answer_mode="reenter"))
    assert isinstance(err.value, NotImplementedError) and "'tfm'" not in str(err.value)
    with pytest.raises(NotImplementedError):
        teachers[1].reenter(batch, torch.zeros(12, 24))


def test_bad_values_and_combinations(student, teachers, batch):
    with pytest.raises(CommitteeConfigError):
        GateConfig(rho=1.5)
    with pytest.raises(CommitteeConfigError):
        CommitteeConfig(answer_mode="attent")
    with pytest.raises(CommitteeConfigError, match="answer_head"):
        Committee.build(student, teachers, batch, CommitteeConfig(answer_head="haed"))
    with pytest.raises(CommitteeConfigError, match="set teacher"):
        Committee.build(student, teachers, batch, CommitteeConfig(method="feature_kd"))
    with pytest.raises(CommitteeConfigError, match="at least one teacher"):
        Committee.build(student, [], batch, CommitteeConfig())
    with pytest.raises(CommitteeConfigError, match="'answer_kd' in committee.losses has no weight: set committee.weights.answer_kd"):
        Committee.build(student, teachers, batch, CommitteeConfig(losses=["task", "kd", "answer_kd"]))


def test_nan_task_loss_names_step_and_term(student, teachers, batch):
    committee = Committee.build(student, teachers, batch)
    batch.x[3] = float("nan")  # (a NaN label is not an error: it marks a transfer row, which the task loss skips)
    with pytest.raises(NonFiniteLossError) as err:
        committee(batch, 7)
    assert err.value.step == 7 and err.value.term == "task"
    assert "step 7" in str(err.value) and "'task'" in str(err.value)


class _NaNTeacher(MLPTeacher):
    poisoned = False

    def forward_model(self, batch):
        out = super().forward_model(batch)
        return out * float("nan") if self.poisoned else out


def test_nan_teacher_logits_name_the_kd_term(student, batch):
    bad = _NaNTeacher(6, name="bad")
    committee = Committee.build(student, [MLPTeacher(6, name="ok"), bad], batch, CommitteeConfig(gate="dense"))
    bad.poisoned = True
    with pytest.raises(NonFiniteLossError) as err:
        committee(batch, 42)
    assert (err.value.step, err.value.term) == (42, "kd")


def test_loss_options_are_checked_with_the_config_before_any_teacher():
    """committee_config (the runner's config read) calls check_losses: a misspelled loss option
    fails there with the close match, before a teacher is built or cached."""
    from recsys_committee.committee.committee import check_losses

    with pytest.raises(UnknownNameError, match="confidence_temperature"):
        check_losses(CommitteeConfig(loss_options={"confidence_kd": {"confidence_temprature": 0.1}}))
    check_losses(CommitteeConfig(loss_options={"confidence_kd": {"confidence_temperature": 0.1}}))  # the right name passes

"""Every method builds, steps and backpropagates on both task kinds, with the expected terms."""

import math

import pytest
import torch

from committee_toys import MLPTeacher, ToyStudent, TransformerTeacher, make_batch
from recsys_committee.committee import Committee, CommitteeConfig, list_methods

EXPECTED_TERMS = {
    "no_kd": ["task"],
    "logit_kd": ["task", "kd"],
    "feature_kd": ["task", "feature_kd"],
    "avg_kd": ["task", "avg_kd"],
    "camkd": ["task", "camkd"],
    "diverse_distill": ["task", "kd", "answer", "align", "gate"],
}


def test_all_methods_are_registered():
    assert set(list_methods()) == set(EXPECTED_TERMS)


@pytest.mark.parametrize("n_classes", [0, 3])
@pytest.mark.parametrize("method", sorted(EXPECTED_TERMS))
def test_method_step(method, n_classes):
    batch = make_batch(n=10, d_in=6, n_classes=n_classes)
    student = ToyStudent(6, n_classes=n_classes)
    teachers = [MLPTeacher(6, name="mlp", n_classes=n_classes), TransformerTeacher(6, name="tfm", n_classes=n_classes)]
    committee = Committee.build(student, teachers, batch, CommitteeConfig(method=method, teacher="tfm"))
    assert committee.task == ("binary" if n_classes == 0 else "multiclass")
    committee.train()
    out = committee(batch, 0)
    assert list(out.terms) == EXPECTED_TERMS[method]
    assert all(t.dim() == 0 and math.isfinite(float(t.detach())) for t in out.terms.values())
    expected = sum(committee.weights[n] * t for n, t in out.terms.items())
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    assert all(p.grad is not None for p in student.parameters())


def test_weight_zero_turns_a_loss_off_but_gate_keeps_its_target():
    batch = make_batch(n=10, d_in=6)
    cfg = CommitteeConfig(weights={"answer": 0.0, "align": 0.0})
    committee = Committee.build(ToyStudent(6), [MLPTeacher(6, name="a"), MLPTeacher(6, name="b")], batch, cfg)
    out = committee(batch, 0)
    assert "align" not in out.terms and "answer" in out.terms and committee.weights["answer"] == 0.0
    assert "gate" in out.terms

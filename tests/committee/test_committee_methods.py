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

# which of the toy student's parts (inp -> body -> h -> head) each term's gradient must reach
STUDENT_PARTS = ("inp", "body", "head")
TERM_REACHES = {
    "task": STUDENT_PARTS,
    "kd": STUDENT_PARTS,  # the student's logits
    "avg_kd": STUDENT_PARTS,
    "camkd": STUDENT_PARTS,
    "feature_kd": ("inp", "body"),  # a projection of h: the head is not on its path
    "answer": STUDENT_PARTS,  # L_task(H(answer)): the question reads h, H is the student's head
    "align": ("inp", "body"),  # h towards the (detached) answer
    "gate": (),  # the gate reads sg(h0): its loss trains the gate alone
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
    # each term reaches exactly the student parameters it must train: a detached KD target,
    # a term cut off from the student (or the gate's loss leaking into it) fails here
    student_params = dict(student.named_parameters())
    for name, term in out.terms.items():
        grads = torch.autograd.grad(term, list(student_params.values()), retain_graph=True, allow_unused=True)
        moved = {n for (n, p), g in zip(student_params.items(), grads) if g is not None and bool(g.abs().sum() > 0)}
        assert all(g is None or bool(torch.isfinite(g).all()) for g in grads), name
        assert moved == {n for n in student_params if n.split(".")[0] in TERM_REACHES[name]}, (name, sorted(moved))
    out.loss.backward()
    # the summed loss trains every trainable parameter (student, QA module, gate, projectors) with
    # finite, non-zero gradients; the frozen teachers get none
    trainable = dict(committee.named_trainable_parameters())
    assert set(student_params) <= {n.removeprefix("student.") for n in trainable}
    for n, p in trainable.items():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()) and bool(p.grad.abs().sum() > 0), n
    assert all(p.grad is None for t in teachers for p in t.parameters())


def test_weight_zero_turns_a_loss_off_but_gate_keeps_its_target():
    batch = make_batch(n=10, d_in=6)
    cfg = CommitteeConfig(weights={"answer": 0.0, "align": 0.0})
    committee = Committee.build(ToyStudent(6), [MLPTeacher(6, name="a"), MLPTeacher(6, name="b")], batch, cfg)
    out = committee(batch, 0)
    assert "align" not in out.terms and "answer" in out.terms and committee.weights["answer"] == 0.0
    assert "gate" in out.terms


@pytest.mark.parametrize("logit_target", [True, False])
def test_a_teacher_that_is_no_logit_target_still_answers(logit_target):
    """logit_target: false drops a teacher's logits from KD (its head changed: the KD term does
    not), while its features still reach the QA module (answer and align run for it)."""
    torch.manual_seed(0)
    batch = make_batch(n=12, d_in=6)
    a, b = MLPTeacher(6, name="a"), MLPTeacher(6, name="b")
    b.logit_target = logit_target
    committee = Committee.build(ToyStudent(6), [a, b], batch, CommitteeConfig(gate="dense"))
    assert [i.has_logits for i in committee.infos] == [True, logit_target]
    before = committee(batch, 0).terms
    with torch.no_grad():
        b.model[4].weight.mul_(-3.0)  # b's head only: its tapped features (after the ReLU) are unchanged
    after = committee(batch, 0).terms
    assert torch.equal(before["kd"], after["kd"]) is (not logit_target)
    torch.testing.assert_close(before["align"], after["align"])
    assert float(after["answer"].detach()) > 0


def test_multi_teacher_kd_leaves_out_a_teacher_that_is_no_logit_target():
    batch = make_batch(n=10, d_in=6)
    a, b = MLPTeacher(6, name="a"), MLPTeacher(6, name="b")
    b.logit_target = False
    committee = Committee.build(ToyStudent(6), [a, b], batch, CommitteeConfig(method="avg_kd"))
    assert [t.name for t in committee.teachers] == ["a"]

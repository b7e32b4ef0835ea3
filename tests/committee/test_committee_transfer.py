"""Rows without a label (transfer rows): every loss that reads a label skips them, every loss
that reads teachers runs on them, and the counters tell them apart."""

from __future__ import annotations

import pytest
import torch

from committee_toys import MLPTeacher, ToyBatch, ToyStudent, make_batch
from recsys_committee.committee import Committee
from recsys_committee.committee.config import CommitteeConfig, CommitteeConfigError

D_IN = 6


def _committee(method: str, n_classes: int = 0, **cfg) -> Committee:
    torch.manual_seed(0)
    student = ToyStudent(D_IN, n_classes=n_classes)
    teachers = [MLPTeacher(D_IN, name="a", n_classes=n_classes), MLPTeacher(D_IN, name="b", hidden=20, n_classes=n_classes)]
    probe = make_batch(n=8, d_in=D_IN, n_classes=n_classes)
    return Committee.build(student, teachers, probe, CommitteeConfig(method=method, gate="dense", **cfg))


def _unlabel(batch: ToyBatch, rows: torch.Tensor) -> ToyBatch:
    labels = batch.labels.clone()
    labels[rows] = float("nan") if labels.is_floating_point() else -1
    return ToyBatch(batch.x, labels, batch.example_ids)


@pytest.mark.parametrize("n_classes", [0, 3])
def test_task_loss_reads_only_labeled_rows(n_classes):
    committee = _committee("no_kd", n_classes)
    batch = make_batch(n=12, d_in=D_IN, n_classes=n_classes)
    unlabeled = torch.arange(8, 12)
    mixed = committee(_unlabel(batch, unlabeled), step=0)
    labeled_only = committee(batch.subset(torch.arange(8)), step=0)
    assert torch.isfinite(mixed.loss)
    assert torch.allclose(mixed.terms["task"], labeled_only.terms["task"], atol=1e-6)


def test_teacher_losses_run_on_transfer_rows_with_their_weight():
    batch = make_batch(n=12, d_in=D_IN)
    unlabeled = torch.arange(6, 12)
    terms = {}
    for weight in (0.0, 1.0, 3.0):
        committee = _committee("diverse_distill", transfer_weight=weight)
        committee.eval()  # no dropout: the same forward for every weight
        out = committee(_unlabel(batch, unlabeled), step=0)
        terms[weight] = {k: float(v.detach()) for k, v in out.terms.items()}
        assert out.loss.requires_grad and torch.isfinite(out.loss)
    # KD / align on the transfer rows grow linearly with their weight (labeled rows fixed)
    for name in ("kd", "align"):
        base, one, three = terms[0.0][name], terms[1.0][name], terms[3.0][name]
        assert one > base and three - base == pytest.approx(3 * (one - base), rel=1e-4), name
    # the label-reading losses do not move with the transfer weight: they never see those rows
    for name in ("task", "answer"):
        assert terms[0.0][name] == pytest.approx(terms[3.0][name], rel=1e-6), name


@pytest.mark.parametrize("n_classes", [0, 3])
def test_answer_kd_teaches_the_qa_module_on_transfer_rows(n_classes):
    """The answer loss needs a label, so on transfer rows only answer_kd trains the QA module:
    it must run there (growing with the transfer weight) and be KD(H(â_k), t_k), per teacher."""
    batch = make_batch(n=12, d_in=D_IN, n_classes=n_classes)
    unlabeled = torch.arange(6, 12)
    losses = ["task", "kd", "answer", "answer_kd", "align"]
    terms = {}
    for weight in (0.0, 1.0, 3.0):
        committee = _committee("diverse_distill", n_classes, transfer_weight=weight, losses=losses, weights={"answer_kd": 0.5})
        committee.eval()
        out = committee(_unlabel(batch, unlabeled), step=0)
        terms[weight] = {k: float(v.detach()) for k, v in out.terms.items()}
    base, one, three = (terms[w]["answer_kd"] for w in (0.0, 1.0, 3.0))
    assert one > base > 0 and three - base == pytest.approx(3 * (one - base), rel=1e-4)
    assert terms[0.0]["answer"] == pytest.approx(terms[3.0]["answer"], rel=1e-6)
    # on a fully labeled step it is the batch mean of sum_k w_k KD(H(â_k), t_k; T), w_k = 1/K (dense gate)
    from recsys_committee.committee.losses import kd_loss

    committee = _committee("diverse_distill", n_classes, losses=losses, weights={"answer_kd": 0.5})
    committee.eval()
    out = committee(batch, step=0)
    with torch.no_grad():
        u = committee.qa.question.base(committee.student(batch).hidden)
        expected = 0.0
        for k, teacher in enumerate(committee.teachers):
            t = teacher.run(batch)
            _, answer_hat = committee.qa(k, u, t, teacher, batch)
            answer_logits = committee._head(answer_hat)
            expected = expected + kd_loss(answer_logits, t.logits.reshape(answer_logits.shape), committee.config.kd_temperature, committee.task)
    assert float(out.terms["answer_kd"]) == pytest.approx(float(expected.mean()) / len(committee.teachers), rel=1e-5)


def test_camkd_weighs_teachers_equally_without_a_label():
    from recsys_committee.committee.losses import kd_loss

    batch = make_batch(n=10, d_in=D_IN)
    camkd = _committee("camkd")
    camkd.eval()
    out = camkd(_unlabel(batch, torch.arange(10)), step=0)
    with torch.no_grad():
        s = camkd.student(batch).logits
        per_teacher = [kd_loss(s, t.run(batch).logits.reshape(-1), camkd.config.kd_temperature, "binary") for t in camkd.teachers]
    expected = torch.stack(per_teacher, dim=1).mean(dim=1).mean()  # uniform weights: no label to be confident about
    assert float(out.terms["camkd"]) == pytest.approx(float(expected), rel=1e-5)
    assert float(out.terms["task"]) == 0.0  # no labeled row in the step: nothing for the task loss


@pytest.mark.parametrize("n_classes", [0, 3])
def test_confidence_kd_weighs_teachers_by_their_confidence_on_transfer_rows(n_classes):
    """confidence_kd reads no label: on a step of transfer rows only, it is the batch mean of
    sum_k softmax_k(-entropy_k / tau) KD(s, t_k; T), and the weights are not the equal ones."""
    from recsys_committee.committee.losses import kd_loss, prediction_entropy

    batch = make_batch(n=10, d_in=D_IN, n_classes=n_classes)
    tau = 0.1
    committee = _committee("diverse_distill", n_classes, losses=["task", "confidence_kd", "answer", "align"],
                           weights={"confidence_kd": 1.0}, loss_options={"confidence_kd": {"confidence_temperature": tau}})
    committee.eval()
    out = committee(_unlabel(batch, torch.arange(10)), step=0)
    with torch.no_grad():
        s = committee.student(batch).logits
        t = [teacher.run(batch).logits.reshape(s.shape) for teacher in committee.teachers]
        kd = torch.stack([kd_loss(s, tk, committee.config.kd_temperature, committee.task) for tk in t], dim=1)
        w = torch.softmax(-torch.stack([prediction_entropy(tk, committee.task) for tk in t], dim=1) / tau, dim=1)
    assert float(out.terms["confidence_kd"]) == pytest.approx(float((w * kd).sum(dim=1).mean()), rel=1e-5)
    assert float((w * kd).sum(dim=1).mean()) != pytest.approx(float(kd.mean()), rel=1e-3)  # not average KD in disguise
    assert float(out.terms["task"]) == 0.0


def test_bad_confidence_temperature_is_refused():
    with pytest.raises(CommitteeConfigError, match="confidence_temperature must be > 0"):
        _committee("diverse_distill", losses=["task", "confidence_kd"], weights={"confidence_kd": 1.0},
                   loss_options={"confidence_kd": {"confidence_temperature": 0.0}})


def test_counters_report_labeled_and_transfer_rows_apart():
    committee = _committee("diverse_distill")
    committee(_unlabel(make_batch(n=12, d_in=D_IN), torch.arange(9, 12)), step=0)
    committee(make_batch(n=5, d_in=D_IN), step=1)
    f = committee.teacher_forwards()
    assert (f["samples"], f["labeled_samples"], f["transfer_samples"]) == (17, 14, 3)


def test_bad_transfer_weight_is_refused():
    with pytest.raises(CommitteeConfigError, match="transfer_weight"):
        CommitteeConfig(transfer_weight=-1.0)

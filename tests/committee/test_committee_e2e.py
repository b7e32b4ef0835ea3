"""End to end on a synthetic task where one teacher knows the answer (the Bayes logit) and one
is random noise: with 200 noisy labels the no-KD student overfits; DiverseDistill's student
learns the true function through the committee."""

import torch
from torch import nn

from committee_toys import MLPTeacher, ToyBatch, ToyStudent, TransformerTeacher
from recsys_committee.committee import Committee, CommitteeConfig, GateConfig, export_student

D = 10


def _task(seed: int):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(D, generator=g)
    w = w / w.norm()

    def draw(n):
        x = torch.randn(n, D, generator=g)
        p = torch.sigmoid(4 * x @ w)
        return ToyBatch(x, (torch.rand(n, generator=g) < p).float(), torch.arange(n)), p

    return w, draw(200), draw(2000)


def _oracle(w):
    """logit = 4 w.x exactly, through a ReLU layer we tap: [relu(x), relu(-x)]."""
    model = nn.Sequential(nn.Linear(D, 2 * D), nn.ReLU(), nn.Linear(2 * D, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.cat([torch.eye(D), -torch.eye(D)]))
        model[0].bias.zero_()
        model[2].weight.copy_(torch.cat([4 * w, -4 * w])[None])
        model[2].bias.zero_()
    teacher = MLPTeacher(D, name="oracle", model=model)
    teacher.tap = "1"
    return teacher


def _train(method: str, seed: int = 0, steps: int = 300):
    w, (train, _), (test, p_test) = _task(seed)
    torch.manual_seed(seed)
    teachers = [_oracle(w), TransformerTeacher(D, name="noise")]
    committee = Committee.build(ToyStudent(D, hidden=64), teachers, train, CommitteeConfig(method=method, gate_config=GateConfig(warmup_steps=50)))
    opt = torch.optim.Adam(committee.trainable_parameters(), lr=1e-2)
    committee.train()
    for step in range(steps):
        out = committee(train, step)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    student = export_student(committee)
    with torch.no_grad():
        logits = student(test).logits
    ce_vs_truth = nn.functional.binary_cross_entropy_with_logits(logits, p_test).item()
    acc_vs_bayes = ((logits > 0) == (p_test > 0.5)).float().mean().item()
    return ce_vs_truth, acc_vs_bayes


def test_diverse_distill_beats_no_kd():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: one thread is faster, and robust on a busy 2-core box
    try:
        ce_plain, acc_plain = _train("no_kd")
        ce_dd, acc_dd = _train("diverse_distill")
    finally:
        torch.set_num_threads(threads)
    assert ce_dd < ce_plain - 0.3, (ce_dd, ce_plain)
    assert acc_dd > acc_plain, (acc_dd, acc_plain)

"""Teachers stay frozen: no grads, no parameter or buffer change, eval mode throughout."""

import pytest
import torch

from committee_toys import MLPTeacher, TransformerTeacher, make_batch
from recsys_committee.committee import (
    TEACHERS,
    Committee,
    CommitteeConfig,
    GateConfig,
    PrecomputedTeacher,
    build_teacher,
    register_teacher,
)
from recsys_committee.registry import UnknownNameError


def _snapshot(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("answer_mode", ["attend", "reenter"])
def test_teachers_unchanged_and_gradless_after_training_steps(answer_mode, batch, student):
    if answer_mode == "attend":
        teachers = [MLPTeacher(6, name="mlp"), TransformerTeacher(6, name="tfm")]
    else:
        teachers = [TransformerTeacher(6, name="tfm"), TransformerTeacher(6, name="tfm2")]
    before = [_snapshot(t) for t in teachers]
    cfg = CommitteeConfig(answer_mode=answer_mode, gate_config=GateConfig(warmup_steps=2, rho=0.9, eps=0.2))
    committee = Committee.build(student, teachers, batch, cfg)
    # the whole committee in the optimiser (weight decay on): frozen params must still not move
    opt = torch.optim.AdamW(committee.parameters(), lr=1e-2, weight_decay=0.1)
    committee.train()
    for step in range(5):
        out = committee(batch, step)
        opt.zero_grad()
        out.loss.backward()
        if step == 0:
            q = committee.qa.question
            assert q.w_u.weight.grad is not None and q.w_u.weight.grad.abs().sum() > 0
            assert q.embedding.grad is not None and q.embedding.grad.abs().sum() > 0
            assert all(p.grad is not None for p in q.proj.parameters())
        opt.step()
    for t, snap in zip(teachers, before):
        assert not t.model.training
        assert all(p.grad is None and not p.requires_grad for p in t.parameters())
        after = t.state_dict()
        assert snap.keys() == after.keys()
        assert all(torch.equal(snap[k], after[k]) for k in snap), f"teacher {t.name} changed"


def test_train_keeps_teacher_in_eval_and_run_is_deterministic(batch):
    t = MLPTeacher(6)
    t.train()
    assert t.training and not t.model.training
    a, b = t.run(batch), t.run(batch)
    assert torch.equal(a.features, b.features) and torch.equal(a.logits, b.logits)
    assert not a.features.requires_grad


def test_probe_discovers_feature_dim_and_kind(batch):
    mlp, tfm = MLPTeacher(6, hidden=24), TransformerTeacher(6)
    mlp.probe(batch)
    tfm.probe(batch)
    assert (mlp.feature_dim, mlp.feature_kind, mlp.has_logits) == (24, "vector", True)
    assert (tfm.feature_dim, tfm.feature_kind) == (16, "tokens")


def test_precomputed_teacher_looks_up_by_example_ids(student):
    full = make_batch(n=20, d_in=6)
    feats, logits = torch.randn(20, 5, 3), torch.randn(20)
    t = PrecomputedTeacher(feats, logits, name="lm", mask=torch.ones(20, 5, dtype=torch.bool))
    rows = torch.tensor([3, 17, 4])
    out = t.run(full.subset(rows))
    assert torch.equal(out.features, feats[rows]) and torch.equal(out.logits, logits[rows])
    assert "features" not in t.state_dict()  # cache stays out of checkpoints
    committee = Committee.build(student, [t], full)
    committee.train()
    committee(full, 0).loss.backward()


def test_teacher_registry_builds_and_lists_names():
    name = "toy_mlp_for_registry_test"
    if name not in TEACHERS:
        register_teacher(name)(lambda d_in, always_on=False, *, context: MLPTeacher(d_in, name=name, always_on=always_on))
    t = build_teacher(name, 6, always_on=True)
    assert t.always_on and t.name == name
    with pytest.raises(UnknownNameError) as err:
        build_teacher("toy_mlp_for_registry_tst")
    assert name in str(err.value)
    with pytest.raises(UnknownNameError, match="alwayson"):
        build_teacher(name, 6, alwayson=True)

"""Routing: routed execution equals dense execution on the pairs that ran; exact counters;
warm-up is dense; always_on teachers always run; eval routing is deterministic."""

import math

import pytest
import torch

from committee_toys import MLPTeacher, TransformerTeacher, make_batch
from recsys_committee.committee import Committee, CommitteeConfig, GateConfig


def _sparse_cfg(**gate):
    params = dict(rho=0.99, eps=0.0, warmup_steps=0)
    params.update(gate)
    return CommitteeConfig(gate_config=GateConfig(**params))


def test_routed_equals_dense_on_active_pairs(student, teachers):
    batch = make_batch(n=32, d_in=6, seed=1)
    committee = Committee.build(student, teachers, batch, _sparse_cfg())
    committee.eval()
    routed = committee(batch, 10)
    active = routed.active
    assert not bool(active.all()), "test needs some skipped pairs"
    assert bool(active.any(dim=1).all())

    gate_forward = committee.gate.forward

    def dense_forward(h0, step):
        decision = gate_forward(h0, step)
        decision.active = torch.ones_like(decision.active)
        decision.weights = decision.probs.detach()
        return decision

    committee.gate.forward = dense_forward
    dense = committee(batch, 10)
    assert bool(dense.active.all())
    for name, (rows, answer_hat) in routed.answers.items():
        dense_rows, dense_hat = dense.answers[name]
        assert torch.equal(dense_rows, torch.arange(32))
        torch.testing.assert_close(answer_hat, dense_hat[rows], rtol=1e-5, atol=1e-6)
    for name, matrix in routed.per_sample.items():
        torch.testing.assert_close(matrix[active], dense.per_sample[name][active], rtol=1e-5, atol=1e-6)
        assert bool((matrix[~active] == 0).all()), f"{name}: skipped pairs must contribute nothing"
        expected = (routed.weights * matrix).sum(dim=1).mean()
        torch.testing.assert_close(routed.terms[name], expected)
    # weights: g renormalised over the active set
    torch.testing.assert_close(routed.weights.sum(dim=1), torch.ones(32))
    assert bool((routed.weights[~active] == 0).all())


def test_counters_are_exact_and_resettable(student, teachers):
    batch = make_batch(n=24, d_in=6, seed=2)
    committee = Committee.build(student, teachers, batch, _sparse_cfg(rho=0.9, eps=0.3, warmup_steps=2))
    committee.train()
    expected = torch.zeros(3, dtype=torch.long)
    samples = 0
    for step in range(6):
        sub = batch.subset(torch.arange(24 - step))  # varying batch sizes
        out = committee(sub, step)
        expected += out.active.sum(dim=0)
        samples += len(sub)
    counts = committee.teacher_forwards()
    assert counts["per_teacher"] == {"mlp": int(expected[0]), "tfm": int(expected[1]), "mlp2": int(expected[2])}
    assert counts["run"] == int(expected.sum()) and counts["dense"] == 3 * samples and counts["samples"] == samples
    assert counts["run"] < counts["dense"]
    assert all(isinstance(v, int) for v in counts["per_teacher"].values())
    committee.reset_teacher_forwards()
    assert committee.teacher_forwards() == {"run": 0, "dense": 0, "samples": 0, "labeled_samples": 0, "transfer_samples": 0,
                                            "per_teacher": {"mlp": 0, "tfm": 0, "mlp2": 0}, "padding": 0}


def test_warmup_is_dense_then_sparse_and_eval_is_deterministic(student, teachers, batch):
    committee = Committee.build(student, teachers, batch, _sparse_cfg(rho=1.0, warmup_steps=3))
    committee.train()
    for step in range(3):
        assert bool(committee(batch, step).active.all())
    after = committee(batch, 3).active
    assert not bool(after.all()) and bool((after.sum(dim=1) == 1).all())  # rho=1: top-1 only
    committee.eval()
    a, b = committee(batch, 0).active, committee(batch, 0).active  # no warm-up, no exploration in eval
    assert torch.equal(a, b) and not bool(a.all())


def test_exploration_only_in_training(student, teachers, batch):
    committee = Committee.build(student, teachers, batch, _sparse_cfg(rho=1.0, eps=1.0))
    committee.train()
    assert bool(committee(batch, 5).active.all())
    committee.eval()
    assert not bool(committee(batch, 5).active.all())


def test_always_on_teacher_always_runs(student, batch):
    teachers = [MLPTeacher(6, name="mlp"), TransformerTeacher(6, name="tfm"), MLPTeacher(6, name="anchor", always_on=True)]
    committee = Committee.build(student, teachers, batch, _sparse_cfg(rho=1.0))
    for mode in (True, False):
        committee.train(mode)
        for step in range(3):
            assert bool(committee(batch, step).active[:, 2].all())


def test_dense_gate_variant_runs_everything_uniformly(student, teachers, batch):
    committee = Committee.build(student, teachers, batch, CommitteeConfig(gate="dense"))
    committee.train()
    out = committee(batch, 500)
    assert bool(out.active.all())
    torch.testing.assert_close(out.weights, torch.full((12, 3), 1 / 3))
    assert "gate" not in out.terms and list(committee.gate.parameters()) == []


def test_baselines_run_the_right_teachers(student, teachers, batch):
    single = Committee.build(student, teachers, batch, CommitteeConfig(method="logit_kd", teacher="tfm"))
    assert [t.name for t in single.teachers] == ["tfm"] and list(single(batch, 0).terms) == ["task", "kd"]
    assert single.teacher_forwards()["per_teacher"] == {"tfm": 12}
    headless = TransformerTeacher(6, name="nohead", with_head=False)
    avg = Committee.build(student, teachers + [headless], batch, CommitteeConfig(method="avg_kd"))
    assert [t.name for t in avg.teachers] == ["mlp", "tfm", "mlp2"]  # no logits -> nothing to average
    none = Committee.build(student, teachers, batch, CommitteeConfig(method="no_kd"))
    out = none(batch, 0)
    assert list(out.terms) == ["task"] and len(none.teachers) == 0 and out.active is None


def _random_gate(skip: float, reweight: bool, always_on=(False, False, False)):
    from recsys_committee.committee.gate import GATES

    return GATES.build("random", n_teachers=3, d0=8, always_on=list(always_on), config=GateConfig(skip_target=skip, reweight=reweight, warmup_steps=0))


def test_random_gate_skips_its_budget_and_reweights_to_the_dense_loss_in_expectation():
    torch.manual_seed(0)
    gate = _random_gate(0.3, reweight=True).train()
    decision = gate(torch.zeros(40_000, 8), step=5)
    # 120,000 pairs: the skipped share's standard deviation is 0.0013, the bound is 7 of them
    assert abs(1 - decision.active.float().mean().item() - 0.3) < 0.01
    # E[w_k] = (1/K)/keep * keep = 1/K for every teacher: the dense weights, on average
    torch.testing.assert_close(decision.weights.mean(dim=0), torch.full((3,), 1 / 3), atol=0.01, rtol=0)
    assert torch.equal(decision.weights > 0, decision.active)
    assert torch.allclose(decision.weights[decision.active], torch.tensor(1 / 3 / 0.7))


def test_random_gate_without_reweighting_renormalises_over_the_pairs_that_ran():
    torch.manual_seed(0)
    decision = _random_gate(0.5, reweight=False).train()(torch.zeros(2_000, 8), step=5)
    sums = decision.weights.sum(dim=1)
    some = decision.active.any(dim=1)
    assert bool(torch.allclose(sums[some], torch.ones(int(some.sum())))) and bool((sums[~some] == 0).all())
    assert (~some).any(), "at skip 0.5 some of 2,000 samples get no teacher (P = 1/8 each)"


def test_random_gate_keeps_always_on_teachers_and_routes_densely_in_eval_and_warmup():
    torch.manual_seed(0)
    gate = _random_gate(0.9, reweight=True, always_on=(True, False, False)).train()
    decision = gate(torch.zeros(1_000, 8), step=5)
    assert bool(decision.active[:, 0].all()) and torch.allclose(decision.weights[:, 0], torch.full((1_000,), 1 / 3))
    gate.eval()
    assert bool(gate(torch.zeros(10, 8), step=5).active.all())
    warm = _random_gate_with_warmup()
    assert bool(warm(torch.zeros(10, 8), step=3).active.all()) and not bool(warm(torch.zeros(1_000, 8), step=4).active.all())


def _random_gate_with_warmup():
    from recsys_committee.committee.gate import GATES

    return GATES.build("random", n_teachers=3, d0=8, always_on=[False] * 3, config=GateConfig(skip_target=0.5, warmup_steps=4)).train()


def test_an_exact_budget_skips_at_least_the_target_on_every_step_and_stays_unbiased():
    """exact_budget: ceil(skip B K) pairs skipped per step, drawn without replacement among the
    pairs that are not always-on, never fewer (the Bernoulli draw lands either side of it)."""
    from recsys_committee.committee.gate import GATES

    torch.manual_seed(0)
    for b, skip, always_on in ((512, 0.3, (False, False)), (7, 0.3, (False, False, False)), (10, 0.5, (True, False, False)), (1, 0.3, (False, False))):
        k = len(always_on)
        gate = GATES.build("random", n_teachers=k, d0=8, always_on=list(always_on),
                           config=GateConfig(skip_target=skip, reweight=True, exact_budget=True, warmup_steps=0)).train()
        n_free = b * (k - sum(always_on))
        want = min(-(-int(round(skip * b * k * 1000)) // 1000), n_free)  # ceil without float noise
        seen = torch.zeros(b, k)
        for step in range(200):
            d = gate(torch.zeros(b, 8), step=step)
            assert int((~d.active).sum()) == want, (b, skip)
            assert bool(d.active[:, torch.tensor(always_on)].all())
            seen += (~d.active).float()
            # every free pair has the same keep probability 1 - want / n_free: its weight is (1/K) / that
            keep = 1 - want / n_free
            free_active = d.active & ~torch.tensor(always_on)
            assert torch.allclose(d.weights[free_active], torch.tensor((1 / k) / keep))
        # drawn uniformly: no free pair is never skipped in 200 steps at these sizes (b = 512: each is
        # skipped with probability 0.3 per step; P(never) = 0.7^200)
        assert bool((seen[:, ~torch.tensor(always_on)] > 0).all()), (b, skip)
    assert -(-int(round(0.3 * 1000 * 1000)) // 1000) == 300  # the float 0.3 * 1000 is 300.00000000000006


def test_an_exact_budget_value_gate_runs_floor_of_the_budget():
    from recsys_committee.committee.gate import GATES

    for exact, want_run in ((False, 717), (True, 716)):  # 1024 pairs at skip 0.3: 716.8 to run
        gate = GATES.build("value", n_teachers=2, d0=8, always_on=[False, False],
                           config=GateConfig(skip_target=0.3, warmup_steps=0, eps=0.0, exact_budget=exact)).train()
        assert int(gate(torch.randn(512, 8), step=3, logits=torch.zeros(512)).active.sum()) == want_run


def test_a_skip_target_outside_0_1_is_a_config_error():
    import pytest

    from recsys_committee.committee.config import CommitteeConfigError

    for bad in (-0.1, 1.0):
        with pytest.raises(CommitteeConfigError, match="skip_target"):
            GateConfig(skip_target=bad)


def test_a_committee_with_the_random_gate_counts_exactly_and_weights_the_losses(student, teachers):
    batch = make_batch(n=64, d_in=6, seed=3)
    committee = Committee.build(student, teachers, batch, CommitteeConfig(gate="random", gate_config=GateConfig(skip_target=0.5, warmup_steps=0)))
    committee.train()
    out = committee(batch, 0)
    assert torch.isfinite(out.loss) and "gate" not in out.terms  # nothing to learn: no gate loss
    counts = committee.teacher_forwards()
    assert counts["run"] == int(out.active.sum()) < counts["dense"] == 3 * 64
    assert torch.allclose(out.weights[out.active], torch.tensor(1 / 3 / 0.5))


def test_sampled_gate_keeps_pairs_by_its_probabilities_under_the_budget(student, teachers):
    from recsys_committee.committee.gate import GATES

    torch.manual_seed(0)
    gate = GATES.build("sampled", n_teachers=3, d0=8, always_on=[False] * 3, config=GateConfig(skip_target=0.3, warmup_steps=2, eps=0.05)).train()
    with torch.no_grad():  # a gate that prefers teacher 0: g = softmax([2, 0, 0]) for every sample
        gate.net[-1].weight.zero_()
        gate.net[-1].bias.copy_(torch.tensor([2.0, 0.0, 0.0]))
    h0 = torch.randn(30_000, 8)
    assert bool(gate(h0, step=1).active.all())  # warm-up: dense
    decision = gate(h0, step=2)
    g = torch.softmax(torch.tensor([2.0, 0.0, 0.0]), 0)
    # teacher 0 saturates (3 * 0.7 * 0.787 > 1): its excess goes to the others, the budget holds
    keep = torch.tensor([1.0, 0.55, 0.55])
    torch.testing.assert_close(decision.active.float().mean(0), keep, atol=0.015, rtol=0)  # 30,000 draws per teacher
    assert abs(decision.active.float().mean().item() - 0.7) < 0.01
    # unbiased: the mean weight of each teacher is the dense 1/K
    torch.testing.assert_close(decision.weights.mean(0), torch.full((3,), 1 / 3), atol=0.02, rtol=0)
    assert torch.equal(decision.logits, torch.tensor([[2.0, 0.0, 0.0]]).expand(30_000, 3))  # G(h0) with the head set above
    torch.testing.assert_close(decision.probs, g.expand(30_000, 3))
    _check_sampled_gate_loss(gate, h0[:3])
    gate.eval()
    assert bool(gate(h0[:5], step=50).active.all())


def _check_sampled_gate_loss(gate, h0: torch.Tensor) -> None:
    """The learned budget gate trains as the importance gate does: CE(p*, g over the teachers that
    ran) + beta * load balance, checked against the formula written out with floats, value and
    gradient on the gate's output bias (tau_g = tau_t = 1, beta = 0.01, K = 3, logits [2, 0, 0])."""
    from recsys_committee.committee.gate import GateDecision

    logits = gate.net(h0)  # [2, 0, 0] on every row, with grad to the gate
    ran = [[True, True, False], [True, True, True], [False, True, False]]
    losses = [[0.5, 1.5, 9.0], [1.0, 1.0, 2.0], [3.0, 0.2, 0.7]]
    active = torch.tensor(ran)
    decision = GateDecision(active=active, weights=active.float() / active.sum(1, keepdim=True), logits=logits,
                            probs=torch.softmax(logits, -1), selected=active)
    gate.zero_grad()
    loss = gate.loss(decision, torch.tensor(losses))
    loss.backward()

    z, b, k, beta = [2.0, 0.0, 0.0], 3, 3, gate.config.beta
    assert (gate.config.tau_g, gate.config.tau_t, beta) == (1.0, 1.0, 0.01)
    expected, grad = 0.0, [0.0] * k
    for row, row_losses in zip(ran, losses):
        s = [j for j in range(k) if row[j]]
        target = {j: math.exp(-row_losses[j]) / sum(math.exp(-row_losses[i]) for i in s) for j in s}
        q = {j: math.exp(z[j]) / sum(math.exp(z[i]) for i in s) for j in s}
        expected += -sum(target[j] * math.log(q[j]) for j in s) / b
        for j in s:
            grad[j] += (q[j] - target[j]) / b
    p = [math.exp(v) / sum(math.exp(u) for u in z) for v in z]  # every row has the same g
    f = [sum(row[j] for row in ran) / sum(map(sum, ran)) for j in range(k)]  # share of the selections: 2, 3, 1 of 6
    balance = k * sum(fj * pj for fj, pj in zip(f, p))
    expected += beta * balance
    for j in range(k):  # d balance / d z_j summed over rows: K p_j (f_j - sum f p)
        grad[j] += beta * k * p[j] * (f[j] - sum(fi * pi for fi, pi in zip(f, p)))
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-6)
    torch.testing.assert_close(gate.net[-1].bias.grad, torch.tensor(grad), rtol=1e-5, atol=1e-7)


def _value_gate(skip: float, warmup: int = 0, eps: float = 0.0, always_on=(False, False, False)):
    from recsys_committee.committee.gate import GATES

    return GATES.build("value", n_teachers=3, d0=8, always_on=list(always_on), config=GateConfig(skip_target=skip, warmup_steps=warmup, eps=eps)).train()


def _fixed_scores(gate, scores: torch.Tensor):
    """Make the value regressor predict ``scores`` [K] + h0[:, 0] (a known ranking)."""
    with torch.no_grad():
        first, last = gate.net[0], gate.net[-1]
        first.weight.zero_(), first.bias.zero_(), last.weight.zero_()
        first.weight[0, 0] = 1.0  # hidden 0 = relu(h0[:, 0])
        last.weight[:, 0] = 1.0
        last.bias.copy_(scores)


def test_value_gate_runs_the_batchs_highest_value_pairs_up_to_the_budget_exactly():
    gate = _value_gate(0.5)
    _fixed_scores(gate, torch.tensor([0.0, 1.0, -1.0]))
    h0 = torch.zeros(10, 8)
    h0[:, 0] = torch.arange(10, dtype=torch.float32) / 10  # later samples score higher for every teacher
    decision = gate(h0, step=3, logits=torch.zeros(10))
    assert int(decision.active.sum()) == 15  # 30 pairs, skip 0.5
    predicted = gate.predict(h0, torch.zeros(10)).detach()
    # the 15 kept pairs are exactly the 15 highest predicted (capacity over the batch, not per sample)
    threshold = predicted.flatten().sort(descending=True).values[14]
    assert bool((predicted[decision.active] >= threshold).all()) and bool((predicted[~decision.active] < threshold).all())
    assert bool(decision.active[:, 1].all()) and not bool(decision.active[:, 2].any())
    assert torch.allclose(decision.weights[decision.active], torch.tensor(1 / 3)) and bool((decision.weights[~decision.active] == 0).all())


def test_value_gate_explores_keeps_always_on_and_is_dense_in_eval():
    torch.manual_seed(0)
    gate = _value_gate(0.5, eps=0.2, always_on=(True, False, False))
    _fixed_scores(gate, torch.tensor([-5.0, 1.0, -1.0]))
    h0, logits = torch.zeros(100, 8), torch.zeros(100)
    decision = gate(h0, step=0, logits=logits)
    assert int(decision.active.sum()) == 150 and bool(decision.active[:, 0].all())
    # 50 free pairs: 40 go to the top teacher (1), 10 (eps) to random others (teacher 2 here)
    assert int(decision.active[:, 1].sum()) >= 40 and int(decision.active[:, 2].sum()) == 50 - int(decision.active[:, 1].sum())
    gate.eval()
    assert bool(gate(h0[:5], step=9, logits=logits[:5]).active.all())


def test_value_gate_warmup_draws_random_pairs_at_the_budget_unbiased():
    torch.manual_seed(0)
    gate = _value_gate(0.3, warmup=10)
    decision = gate(torch.randn(20_000, 8), step=2, logits=torch.randn(20_000))
    assert abs(1 - decision.active.float().mean().item() - 0.3) < 0.01  # 60,000 pairs: sd 0.0019
    torch.testing.assert_close(decision.weights.mean(dim=0), torch.full((3,), 1 / 3), atol=0.01, rtol=0)


def test_value_gate_loss_regresses_the_log_of_its_value_losses_on_the_pairs_that_ran():
    gate = _value_gate(0.5)
    h0, logits = torch.randn(6, 8), torch.randn(6)
    decision = gate(h0, step=0, logits=logits)
    kd, align, answer = torch.rand(6, 3) + 0.1, torch.rand(6, 3), torch.rand(6, 3) + 5.0
    expected = ((decision.logits - (kd + align).log()) ** 2)[decision.active].mean()
    torch.testing.assert_close(gate.loss(decision, {"kd": kd, "align": align, "answer": answer}), expected)  # answer is not a value loss
    assert gate.loss(decision, {"answer": answer}) is None


def test_value_gate_sampling_keeps_pairs_in_proportion_to_their_value_unbiased():
    torch.manual_seed(0)
    from recsys_committee.committee.gate import GATES

    gate = GATES.build("value", n_teachers=3, d0=8, always_on=[False] * 3,
                       config=GateConfig(skip_target=0.5, warmup_steps=0, eps=0.01, value_selection="sample")).train()
    _fixed_scores(gate, torch.log(torch.tensor([2.0, 1.0, 0.5])))  # values 2 : 1 : 0.5 for every sample
    decision = gate(torch.zeros(20_000, 8), step=1, logits=torch.zeros(20_000))
    # c (2 + 1 + 0.5) = 1.5 per sample -> keep 6/7, 3/7, 1.5/7; 20,000 draws per teacher: sd <= 0.0035
    torch.testing.assert_close(decision.active.float().mean(0), torch.tensor([6 / 7, 3 / 7, 1.5 / 7]), atol=0.015, rtol=0)
    torch.testing.assert_close(decision.weights.mean(0), torch.full((3,), 1 / 3), atol=0.02, rtol=0)


def test_a_committee_with_the_value_gate_trains_it_on_each_pairs_kd_and_align_losses(student, teachers):
    batch = make_batch(n=64, d_in=6, seed=4)
    cfg = CommitteeConfig(gate="value", gate_config=GateConfig(skip_target=0.5, warmup_steps=0, eps=0.0))
    committee = Committee.build(student, teachers, batch, cfg)
    committee.train()
    seen = {}
    original = committee.gate.loss

    def spy(decision, pair_losses):
        seen.update(pair_losses)
        return original(decision, pair_losses)

    committee.gate.loss = spy
    out = committee(batch, 0)
    assert "gate" in out.terms and committee.teacher_forwards()["run"] == int(out.active.sum()) == 96
    w = committee.weights
    for name in ("kd", "align", "answer"):
        torch.testing.assert_close(seen[name], w[name] * out.per_sample[name])
        assert bool((seen[name][~out.active] == 0).all())
    out.loss.backward()
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in committee.gate.parameters())


def test_an_unknown_value_loss_or_selection_is_a_config_error(student, teachers):
    import pytest

    from recsys_committee.committee.config import CommitteeConfigError
    from recsys_committee.registry import UnknownNameError

    with pytest.raises(UnknownNameError, match="kd"):
        Committee.build(student, teachers, make_batch(n=8, d_in=6, seed=5), CommitteeConfig(gate="value", gate_config=GateConfig(value_losses=("kdd",))))
    with pytest.raises(CommitteeConfigError, match="value_selection"):
        GateConfig(value_selection="best")


def test_unic_gate_is_the_importance_gate_with_the_target_reversed():
    from recsys_committee.committee.gate import GATES

    torch.manual_seed(0)
    cfg = GateConfig(rho=1.0, warmup_steps=0, eps=0.5, tau_t=0.5)
    imp = GATES.build("importance", n_teachers=3, d0=8, always_on=[False] * 3, config=cfg).train()
    unic = GATES.build("unic", n_teachers=3, d0=8, always_on=[False] * 3, config=cfg).train()
    unic.load_state_dict(imp.state_dict())
    decision = imp(torch.randn(50, 8), step=1)
    losses = torch.rand(50, 3)
    # the CE parts differ only by the sign of the target's losses; the balance term is shared
    torch.testing.assert_close(unic.loss(decision, losses), imp.loss(decision, -losses))
    assert not torch.allclose(unic.loss(decision, losses), imp.loss(decision, losses))


def test_building_a_gate_does_not_move_the_global_random_stream(student, teachers):
    """A gated committee and a dense one built from the same seed get the same QA module and
    draw the same numbers afterwards: gate comparisons are paired on everything but the gate."""
    batch = make_batch(n=16, d_in=6, seed=6)
    built = {}
    for gate in ("dense", "value", "importance"):
        torch.manual_seed(123)
        committee = Committee.build(student, teachers, batch, CommitteeConfig(gate=gate))
        built[gate] = ({k: v.clone() for k, v in committee.qa.state_dict().items()}, torch.rand(3))
    for gate in ("value", "importance"):
        assert all(torch.equal(built[gate][0][k], v) for k, v in built["dense"][0].items())
        assert torch.equal(built[gate][1], built["dense"][1])

"""Loss values on small fixed tensors against ``golden_losses.json``.

The fixture was written once by ``hand_values()`` below: numpy closed forms written from the
definitions (sigmoid/softmax/log by hand), not by calling the library. Regenerate with
``python tests/committee/test_committee_losses.py --write-golden`` only when a definition
changes on purpose; the test also re-checks the fixture against the hand computation.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

GOLDEN = Path(__file__).with_name("golden_losses.json")
T = 2.0

S_BIN = [0.5, -1.2, 2.0, 0.0]
Y_BIN = [1.0, 0.0, 1.0, 0.0]
T_BIN = [1.5, -0.3, 0.7, -2.5]
S_MC = [[1.0, 2.0, 0.5], [0.1, -0.3, 0.2]]
Y_MC = [1, 2]
T_MC = [[0.2, 1.5, -1.0], [2.0, 0.0, 0.3]]
H = [[1.0, 2.0, -1.0], [0.5, 0.0, 0.5]]
A_HAT = [[0.5, 1.0, 1.0], [-1.0, 2.0, 0.0]]
# multi-teacher (binary): teacher logits [B=4, K=2] and which teacher ran (with logits)
T_BIN_K = [[1.5, -0.5], [-0.3, 0.8], [0.7, 2.0], [-2.5, -1.0]]
HAS_K = [[True, True], [True, False], [True, True], [False, False]]
T_MC_K = [[[0.2, 1.5, -1.0], [1.0, 1.0, 0.0]], [[2.0, 0.0, 0.3], [-1.0, 0.5, 0.5]]]
HAS_MC_K = [[True, True], [False, True]]
# gate
G_LOGITS = [[0.2, -0.1, 0.5], [1.0, 0.0, -1.0]]
G_ANS = [[0.7, 0.4, 1.2], [0.3, 0.9, 0.5]]
G_RAN = [[True, True, False], [True, True, True]]
G_SEL = [[True, False, False], [True, True, False]]
TAU_G, TAU_T, BETA = 1.5, 0.5, 0.1
TAU_C = 0.5  # confidence_kd's confidence temperature
# feature KD: projector W [d_k=2, ds=3], b; token features [B=2, L=3, 2] with a mask
FK_W = [[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]]
FK_B = [0.1, -0.2]
FK_F = [[[1.0, 2.0], [3.0, -1.0], [100.0, 100.0]], [[0.5, 0.5], [9.0, 9.0], [9.0, 9.0]]]
FK_MASK = [[True, True, False], [True, False, False]]


# ------------------------------------------------------------------ independent hand computation
def _sig(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def _softmax(x):
    e = np.exp(np.asarray(x, dtype=np.float64))
    return e / e.sum(axis=-1, keepdims=True)


def _bern_kl(p, q):  # KL(Bern(p) || Bern(q)), 0 log 0 = 0
    p, q = np.asarray(p), np.asarray(q)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(p > 0, p * np.log(p / q), 0.0)
        b = np.where(p < 1, (1 - p) * np.log((1 - p) / (1 - q)), 0.0)
    return a + b


def hand_values() -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    s, y, t = np.array(S_BIN), np.array(Y_BIN), np.array(T_BIN)
    out["task_binary"] = list(-(y * np.log(_sig(s)) + (1 - y) * np.log(1 - _sig(s))))
    sm, tm = np.array(S_MC), np.array(T_MC)
    out["task_multiclass"] = [-np.log(_softmax(sm[i])[Y_MC[i]]) for i in range(2)]
    out["kd_binary"] = list(T**2 * _bern_kl(_sig(t / T), _sig(s / T)))
    p, q = _softmax(tm / T), _softmax(sm / T)
    out["kd_multiclass"] = list(T**2 * (p * np.log(p / q)).sum(-1))
    h, a = np.array(H), np.array(A_HAT)
    hn = h / np.linalg.norm(h, axis=1, keepdims=True)
    an = a / np.linalg.norm(a, axis=1, keepdims=True)
    out["align"] = list(((hn - an) ** 2).sum(1))

    tk, has = np.array(T_BIN_K), np.array(HAS_K)
    avg, cam = [], []
    for i in range(4):
        ks = [k for k in range(2) if has[i, k]]
        if not ks:
            avg.append(0.0)
            cam.append(0.0)
            continue
        pbar = np.mean([_sig(tk[i, k] / T) for k in ks])
        avg.append(float(T**2 * _bern_kl(pbar, _sig(s[i] / T))))
        ce = np.array([-(y[i] * np.log(_sig(tk[i, k])) + (1 - y[i]) * np.log(1 - _sig(tk[i, k]))) for k in ks])
        w = np.exp(-ce) / np.exp(-ce).sum()
        kds = np.array([T**2 * _bern_kl(_sig(tk[i, k] / T), _sig(s[i] / T)) for k in ks])
        cam.append(float((w * kds).sum()))
    out["avg_kd_binary"], out["camkd_binary"] = avg, cam

    conf = []  # confidence_kd: w = softmax(-entropy / TAU_C) over the teachers that ran (entropy at temperature 1)
    for i in range(4):
        ks = [k for k in range(2) if has[i, k]]
        if not ks:
            conf.append(0.0)
            continue
        ps = np.array([_sig(tk[i, k]) for k in ks])
        ent = -(ps * np.log(ps) + (1 - ps) * np.log(1 - ps))
        w = np.exp(-ent / TAU_C) / np.exp(-ent / TAU_C).sum()
        kds = np.array([T**2 * _bern_kl(_sig(tk[i, k] / T), _sig(s[i] / T)) for k in ks])
        conf.append(float((w * kds).sum()))
    out["confidence_kd_binary"] = conf

    tmk, hmk = np.array(T_MC_K), np.array(HAS_MC_K)
    avg_mc = []
    for i in range(2):
        ks = [k for k in range(2) if hmk[i, k]]
        pbar = np.mean([_softmax(tmk[i, k] / T) for k in ks], axis=0)
        qs = _softmax(sm[i] / T)
        avg_mc.append(float(T**2 * (pbar * np.log(pbar / qs)).sum()))
    out["avg_kd_multiclass"] = avg_mc

    conf_mc = []
    for i in range(2):
        ks = [k for k in range(2) if hmk[i, k]]
        ent = np.array([-(_softmax(tmk[i, k]) * np.log(_softmax(tmk[i, k]))).sum() for k in ks])
        w = np.exp(-ent / TAU_C) / np.exp(-ent / TAU_C).sum()
        qs, ps = _softmax(sm[i] / T), [_softmax(tmk[i, k] / T) for k in ks]
        conf_mc.append(float(sum(w[j] * T**2 * (ps[j] * np.log(ps[j] / qs)).sum() for j in range(len(ks)))))
    out["confidence_kd_multiclass"] = conf_mc

    gl, ga, ran, sel = np.array(G_LOGITS), np.array(G_ANS), np.array(G_RAN), np.array(G_SEL)
    ces = []
    for i in range(2):
        ks = [k for k in range(3) if ran[i, k]]
        target = _softmax(-ga[i, ks] / TAU_T)
        g_restricted = _softmax(gl[i, ks] / TAU_G)
        ces.append(-(target * np.log(g_restricted)).sum())
    probs = _softmax(gl / TAU_G)
    f = sel.sum(0) / sel.sum()
    lb = 3 * (f * probs.mean(0)).sum()
    out["gate"] = [float(np.mean(ces) + BETA * lb)]

    W, b, F, m = np.array(FK_W), np.array(FK_B), np.array(FK_F), np.array(FK_MASK, dtype=float)
    target = (F * m[..., None]).sum(1) / m.sum(1, keepdims=True)
    pred = h @ W.T + b
    out["feature_kd"] = list(((pred - target) ** 2).mean(1))
    return {k: [float(v) for v in vals] for k, vals in out.items()}


# ------------------------------------------------------------------ library values
def library_values() -> dict[str, list[float]]:
    from recsys_committee.committee import GateConfig, GateDecision, ImportanceGate, StudentOutput, TeacherInfo, TeacherOutput, TeacherView, align_loss, kd_loss, task_loss
    from recsys_committee.committee.losses import AvgKDLoss, CAMKDLoss, ConfidenceKDLoss, FeatureKDLoss, StepContext

    f = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    out: dict[str, torch.Tensor] = {}
    out["task_binary"] = task_loss(f(S_BIN), f(Y_BIN), "binary")
    out["task_multiclass"] = task_loss(f(S_MC), torch.tensor(Y_MC), "multiclass")
    out["kd_binary"] = kd_loss(f(S_BIN), f(T_BIN), T, "binary")
    out["kd_multiclass"] = kd_loss(f(S_MC), f(T_MC), T, "multiclass")
    out["align"] = align_loss(f(H), f(A_HAT))

    def ctx(s, y, tl, has, task):
        student = StudentOutput(logits=s, hidden=torch.zeros(len(s), 1), h0=torch.zeros(len(s), 1))
        return StepContext(student=student, labels=y, task=task, decision=None, gate=None, teacher_logits=tl, has_logits=has)

    bin_ctx = ctx(f(S_BIN), f(Y_BIN), f(T_BIN_K), torch.tensor(HAS_K), "binary")
    out["avg_kd_binary"] = AvgKDLoss(T)(bin_ctx)
    out["camkd_binary"] = CAMKDLoss(T)(bin_ctx)
    mc_ctx = ctx(f(S_MC), torch.tensor(Y_MC), f(T_MC_K), torch.tensor(HAS_MC_K), "multiclass")
    out["avg_kd_multiclass"] = AvgKDLoss(T)(mc_ctx)
    out["confidence_kd_binary"] = ConfidenceKDLoss(T, TAU_C)(bin_ctx)
    out["confidence_kd_multiclass"] = ConfidenceKDLoss(T, TAU_C)(mc_ctx)

    gate = ImportanceGate(3, 4, [False] * 3, GateConfig(tau_g=TAU_G, tau_t=TAU_T, beta=BETA)).double()
    logits = f(G_LOGITS)
    decision = GateDecision(
        active=torch.tensor(G_RAN), weights=torch.zeros(2, 3), logits=logits,
        probs=torch.softmax(logits / TAU_G, dim=-1), selected=torch.tensor(G_SEL),
    )
    out["gate"] = gate.loss(decision, f(G_ANS)).reshape(1)

    fk = FeatureKDLoss(3, [TeacherInfo("t", 2, "tokens", False)]).double()
    with torch.no_grad():
        fk.proj[0].weight.copy_(f(FK_W))
        fk.proj[0].bias.copy_(f(FK_B))
    view = TeacherView(
        k=0, name="t", index=torch.arange(2), logits=torch.zeros(2), hidden=f(H), labels=torch.zeros(2),
        teacher=TeacherOutput(features=f(FK_F), logits=None, mask=torch.tensor(FK_MASK)), task="binary", head=lambda x: x,
    )
    out["feature_kd"] = fk(view)
    return {k: v.detach().double().tolist() for k, v in out.items()}


def test_golden_fixture_matches_hand_computation():
    golden = json.loads(GOLDEN.read_text())["values"]
    hand = hand_values()
    assert golden.keys() == hand.keys()
    for key in hand:
        np.testing.assert_allclose(golden[key], hand[key], rtol=1e-12, err_msg=key)


@pytest.mark.parametrize("key", sorted(hand_values()))
def test_loss_matches_golden(key):
    golden = json.loads(GOLDEN.read_text())["values"]
    np.testing.assert_allclose(library_values()[key], golden[key], rtol=1e-9, atol=1e-12, err_msg=key)


def test_kd_is_zero_when_student_equals_teacher_and_scales_with_t_squared():
    from recsys_committee.committee import kd_loss

    s = torch.tensor([0.3, -2.0, 5.0], dtype=torch.float64)
    assert torch.allclose(kd_loss(s, s, 3.0, "binary"), torch.zeros(3, dtype=torch.float64), atol=1e-12)
    t = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    # T^2 * KL at temperature T: for T -> large, KL ~ (s-t)^2 p(1-p)/(2 T^2), so T^2 KL -> (s-t)^2/8
    big = kd_loss(s, t, 1000.0, "binary")
    assert torch.allclose(big, (s - t) ** 2 / 8, rtol=1e-3)


if __name__ == "__main__" and "--write-golden" in sys.argv:
    GOLDEN.write_text(json.dumps({"_about": "hand_values() in test_committee_losses.py (numpy closed forms)", "values": hand_values()}, indent=1) + "\n")
    print(f"wrote {GOLDEN}")

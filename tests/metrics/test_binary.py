import itertools

import pytest

import torch

from recsys_committee.metrics import auc, gauc, logloss


def _auc_brute(p, y):
    pos = [a for a, b in zip(p, y) if b == 1]
    neg = [a for a, b in zip(p, y) if b == 0]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auc_matches_pairwise_count():
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(300, generator=g) < 0.4).float()
    p = torch.sigmoid(torch.randn(300, generator=g) + y)
    assert abs(auc(p, y) - _auc_brute(p.tolist(), y.tolist())) < 1e-9


def test_gauc_is_mean_of_per_user_auc_skipping_single_class_users():
    g = torch.Generator().manual_seed(1)
    users = torch.tensor([1] * 40 + [2] * 30 + [3] * 10)
    y = (torch.rand(80, generator=g) < 0.5).float()
    y[70:] = 1.0  # user 3 has one class only: skipped
    p = torch.rand(80, generator=g)
    expected = (_auc_brute(p[:40].tolist(), y[:40].tolist()) + _auc_brute(p[40:70].tolist(), y[40:70].tolist())) / 2
    assert abs(gauc(p, y, users) - expected) < 1e-9


def test_logloss_natural_log():
    p = torch.tensor([0.9, 0.2])
    y = torch.tensor([1.0, 0.0])
    expected = -(torch.log(torch.tensor(0.9)) + torch.log(torch.tensor(0.8))) / 2
    assert abs(logloss(p, y) - float(expected)) < 1e-6


def test_gauc_in_blocks_equals_one_block():
    """Users padded in blocks of similar length give the same GAUC as one block padded to the
    most active user (the blocks only bound memory)."""
    g = torch.Generator().manual_seed(0)
    users = (torch.rand(5000, generator=g) ** -1.3).long()  # Zipf-like: a few very active users
    probs = torch.rand(5000, generator=g)
    labels = (torch.rand(5000, generator=g) < probs).float()
    whole = gauc(probs, labels, users, max_cells=10**12)
    assert gauc(probs, labels, users, max_cells=50) == pytest.approx(whole, abs=1e-12)
    assert gauc(probs, labels, users) == pytest.approx(whole, abs=1e-12)

"""Binary-task metrics over ALL predictions of a split: AUC, log loss, NE, GAUC.

Why: AUC is a ranking statistic, so averaging per-batch (or per-rank) AUCs is wrong; we gather
every prediction first and call TorchRec's metric kernels once (RecBole PR #1872 is the classic
bug this avoids). Log loss is natural-log BCE (TorchRec's NE states use log2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchrec.metrics.auc import compute_auc
from torchrec.metrics.gauc import compute_gauc_3d
from torchrec.metrics.ne import compute_ne, get_ne_states

_ETA = 1e-12


def auc(probs: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> float:
    """``weights``: per-row multiplicities (a bootstrap draw's counts); None = every row once."""
    probs, labels = probs.double().flatten(), labels.double().flatten()
    weights = torch.ones_like(probs) if weights is None else weights.double().flatten()
    return float(compute_auc(1, [probs[None]], [labels[None]], [weights[None]])[0])


def logloss(probs: torch.Tensor, labels: torch.Tensor) -> float:
    probs = probs.double().clamp(_ETA, 1 - _ETA)
    return float(F.binary_cross_entropy(probs, labels.double()))


def normalized_entropy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    probs, labels = probs.double()[None], labels.double()[None]
    states = get_ne_states(labels, probs, torch.ones_like(probs), _ETA)
    ne = compute_ne(
        states["cross_entropy_sum"], states["weighted_num_samples"], states["pos_labels"], states["neg_labels"], _ETA
    )
    return float(ne[0])


def gauc(probs: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor, max_cells: int = 1_000_000) -> float:
    """Mean per-user AUC over users with both labels and non-constant predictions. Users are
    padded into [users, longest] blocks for TorchRec's ``compute_gauc_3d``; why blocks of
    users of similar length, at most ``max_cells`` cells each (8 MiB per float64 block): one block padded to the most
    active user's length costs users x longest (GiBs on a Zipf log with 100k users)."""
    order = torch.argsort(groups, stable=True)
    groups, probs, labels = groups[order], probs[order].double(), labels[order].double()
    _, counts = torch.unique_consecutive(groups, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    by_length = torch.argsort(counts, stable=True)
    auc_sum, samples, first = 0.0, 0.0, 0
    while first < by_length.numel():
        width = int(counts[by_length[first]])
        last = first + 1
        while last < by_length.numel() and (last - first + 1) * int(counts[by_length[last]]) <= max(max_cells, int(counts[by_length[last]])):
            last += 1
        block = by_length[first:last]
        width = int(counts[block].max())
        c = counts[block]
        rows = starts[block]
        row = torch.repeat_interleave(torch.arange(block.numel()), c)
        col = torch.arange(int(c.sum())) - torch.repeat_interleave(torch.cumsum(c, 0) - c, c)
        src = torch.repeat_interleave(rows, c) + col
        shape = (1, block.numel(), width)
        p3, l3, w3 = torch.zeros(shape, dtype=torch.float64), torch.zeros(shape, dtype=torch.float64), torch.zeros(shape, dtype=torch.float64)
        p3[0, row, col], l3[0, row, col], w3[0, row, col] = probs[src], labels[src], 1.0
        out = compute_gauc_3d(p3, l3, w3)
        auc_sum += float(out["auc_sum"][0])
        samples += float(out["num_samples"][0])
        first = last
    return auc_sum / samples if samples > 0 else float("nan")


def binary_metrics(probs: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor | None = None) -> dict[str, float]:
    result = {
        "auc": auc(probs, labels),
        "logloss": logloss(probs, labels),
        "ne": normalized_entropy(probs, labels),
        "n": int(labels.numel()),
    }
    if groups is not None:
        result["gauc"] = gauc(probs, labels, groups)
    return result

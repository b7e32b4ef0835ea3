"""Predict a whole split and compute metrics over all of it (overall, warm users, cold users)."""

from __future__ import annotations

import torch
from torch import nn

from recsys_committee.data.batching import RecDataset
from recsys_committee.metrics import binary_metrics
from recsys_committee.train.distributed import DistContext


@torch.no_grad()
def predict(model: nn.Module, dataset: RecDataset, batch_size: int, ctx: DistContext | None = None) -> torch.Tensor:
    """Probabilities for every row of ``dataset``, in row order. Distributed: each rank predicts
    its interleaved share (same number of equal batches everywhere, as the sharded embeddings
    need) and the shares are gathered, so metrics are computed over ALL predictions."""
    ctx = ctx or DistContext.single()
    was_training = model.training
    model.eval()
    rows, _ = ctx.eval_rows(len(dataset))
    probs = [
        torch.sigmoid(model(dataset.batch(rows[i : i + batch_size]).to(ctx.device)).logits.float()).cpu()
        for i in range(0, rows.numel(), batch_size)
    ]
    model.train(was_training)
    return ctx.gather_predictions(torch.cat(probs), len(dataset))


def split_metrics(probs: torch.Tensor, dataset: RecDataset, warm_users: torch.Tensor | None = None) -> dict:
    result = binary_metrics(probs, dataset.labels, dataset.users)
    if warm_users is not None:
        warm = torch.isin(dataset.users, warm_users)
        for name, mask in (("warm", warm), ("cold", ~warm)):
            if mask.any() and dataset.labels[mask].unique().numel() == 2:
                result[name] = binary_metrics(probs[mask], dataset.labels[mask], dataset.users[mask])
    return result

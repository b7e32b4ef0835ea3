"""Predict a whole split and compute metrics over all of it (overall, warm users, cold users)."""

from __future__ import annotations

import torch
from torch import nn

from recsys_committee.data.batching import RecDataset
from recsys_committee.metrics import binary_metrics


@torch.no_grad()
def predict(model: nn.Module, dataset: RecDataset, batch_size: int) -> torch.Tensor:
    was_training = model.training
    model.eval()
    probs = [torch.sigmoid(model(batch).logits.float()) for batch in dataset.batches(batch_size)]
    model.train(was_training)
    return torch.cat(probs)


def split_metrics(probs: torch.Tensor, dataset: RecDataset, warm_users: torch.Tensor | None = None) -> dict:
    result = binary_metrics(probs, dataset.labels, dataset.users)
    if warm_users is not None:
        warm = torch.isin(dataset.users, warm_users)
        for name, mask in (("warm", warm), ("cold", ~warm)):
            if mask.any() and dataset.labels[mask].unique().numel() == 2:
                result[name] = binary_metrics(probs[mask], dataset.labels[mask], dataset.users[mask])
    return result

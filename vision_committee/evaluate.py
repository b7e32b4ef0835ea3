"""Top-1 accuracy (the vision metric of record), top-5 and log loss over a whole split."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.classification import multiclass_accuracy

from vision_committee.data import NUM_CLASSES, VisionSplit


@torch.no_grad()
def predict_logits(model: nn.Module, split: VisionSplit, batch_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    was_training = model.training
    model.eval()
    logits = [model(b.to(device)).logits.float().cpu() for b in split.batches(batch_size)]
    model.train(was_training)
    return torch.cat(logits)


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """micro-averaged top-1 / top-5 accuracy (torchmetrics) and the mean log loss."""
    return {
        "top1": float(multiclass_accuracy(logits, labels, num_classes=NUM_CLASSES, average="micro", top_k=1)),
        "top5": float(multiclass_accuracy(logits, labels, num_classes=NUM_CLASSES, average="micro", top_k=5)),
        "logloss": float(F.cross_entropy(logits, labels)),
        "rows": int(labels.numel()),
    }

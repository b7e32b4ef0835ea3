"""The vision domain: Fashion-MNIST, registered CNN / MobileNetV2 classifiers, top-1 accuracy.

Why this file is the whole vision run: the train/distill procedure is the core's one runner
(``recsys_committee.train.runner``); vision supplies only its pieces behind the ``Domain``
contract: the images, the models, cross-entropy, top-1/top-5/log loss over a split and the
model file. Nothing here (or in anything it imports) loads TorchRec.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.classification import multiclass_accuracy

from recsys_committee.domain import DOMAINS, Domain, register_domain
from recsys_committee.train.runner import run_distill, run_train
from recsys_committee.errors import ConfigError
from recsys_committee.train.config import RunConfig
from recsys_committee.train.distributed import DistContext
from recsys_committee.train.rows import predict_logits
from vision_committee import teachers as _teachers  # noqa: F401  (registers the vision teachers)
from vision_committee.checkpoint import load_vision_model, vision_payload
from vision_committee.data import NUM_CLASSES, VisionData, load_fashion_mnist
from vision_committee.models import VISION_MODELS, build_vision_model

DATASETS = ("fashion_mnist",)
DATA_ROOT = "data"  # where `make data` puts FashionMNIST/ (data.root overrides)


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """micro-averaged top-1 / top-5 accuracy (torchmetrics) and the mean log loss."""
    return {
        "top1": float(multiclass_accuracy(logits, labels, num_classes=NUM_CLASSES, average="micro", top_k=1)),
        "top5": float(multiclass_accuracy(logits, labels, num_classes=NUM_CLASSES, average="micro", top_k=5)),
        "logloss": float(F.cross_entropy(logits, labels)),
        "rows": int(labels.numel()),
    }


@register_domain("vision")
class VisionDomain(Domain):
    metric = "top1"

    def check_config(self, cfg: RunConfig) -> None:
        if (cfg.data.dataset or DATASETS[0]) not in DATASETS:
            raise ConfigError(f"data.dataset: the vision runs read {DATASETS}, got '{cfg.data.dataset}'")
        if cfg.dist.num_workers > 1 or cfg.dist.use_gpu:
            raise ConfigError("dist.*: vision runs are single-process (no sharded tables); multi-worker training is the recommendation side's")

    def load_data(self, cfg: RunConfig, transfer: bool = True) -> VisionData:
        self.check_config(cfg)
        per_row = (cfg.data.transfer_per_row or 0) if transfer else 0  # the labeled split is the same either way
        return load_fashion_mnist(cfg.data.root or DATA_ROOT, max_train_rows=cfg.data.max_rows, transfer_per_row=per_row)

    def build_model(self, cfg: RunConfig, data: Any = None) -> nn.Module:
        VISION_MODELS.get(cfg.model.name)  # unknown names fail with the close matches
        return build_vision_model(cfg.model.name, **cfg.model.params)

    def task_loss(self, logits: torch.Tensor, batch: Any) -> torch.Tensor:
        return F.cross_entropy(logits, batch.labels)

    def evaluate(self, model: nn.Module, data: VisionData, split: str, cfg: RunConfig, ctx: DistContext) -> dict[str, Any]:
        part = getattr(data, split)
        return classification_metrics(predict_logits(model, part, cfg.train.eval_batch_size, ctx), part.labels)

    def model_payload(self, cfg: RunConfig, data: Any, state: dict, epoch: int, val: dict[str, Any], method: Optional[str]) -> dict[str, Any]:
        return vision_payload(cfg.model.name, cfg.model.params, state, epoch, val, method)

    def load_model(self, path: str | Path, data: Any = None) -> nn.Module:
        return load_vision_model(path)

    def run_facts(self, data: VisionData) -> dict[str, Any]:
        return {"train_rows": len(data.train)}


VISION: Domain = DOMAINS.get("vision")


def load_vision_data(cfg: RunConfig) -> VisionData:
    return VISION.load_data(cfg)


def run_vision_train(cfg: RunConfig, out: Path, data: Optional[VisionData] = None, overwrite: bool = False) -> dict[str, Any]:
    """``python -m vision_committee train``: one classifier (a teacher, or the no-KD student).
    A non-empty ``out`` is refused unless ``overwrite``; a config vision cannot run is refused
    first, even when ``data`` is given."""
    VISION.check_config(cfg)
    return run_train(VISION, cfg, out, data, overwrite=overwrite)


def run_vision_distill(cfg: RunConfig, out: Path, data: Optional[VisionData] = None, overwrite: bool = False) -> dict[str, Any]:
    """``python -m vision_committee distill``: the committee into the student. A non-empty
    ``out`` is refused unless ``overwrite``; a config vision cannot run is refused first."""
    VISION.check_config(cfg)
    return run_distill(VISION, cfg, out, data, overwrite=overwrite)

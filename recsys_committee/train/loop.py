"""One training loop, read top to bottom: batch -> loss -> step -> validate -> keep the best.

Why one loop for plain training and committee distillation: both are "minimise a loss over
batches, select the epoch with the best validation AUC, report test metrics of that epoch".
Plain training passes the model's BCE; distillation passes the committee's loss and the
student as the predictor. Test metrics are computed once, on the best-validation weights.
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn
from torch.distributed.optim import _apply_optimizer_in_backward
from tqdm.auto import tqdm

from recsys_committee.committee.config import NonFiniteLossError
from recsys_committee.data.batching import RecBatch
from recsys_committee.data.movielens import RecData
from recsys_committee.models.registry import dense_parameters, embedding_parameters
from recsys_committee.train.config import OptimConfig, TrainConfig
from recsys_committee.train.evaluate import predict, split_metrics

LossFn = Callable[[RecBatch, int], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def seed_everything(seed: int, deterministic: bool = True) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


def make_optimizer(trainable: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """Adam for dense weights; embeddings get a fused in-backward optimiser (TorchRec style)
    so their sparse rows are updated as the gradient arrives, as FBGEMM does under DMP."""
    emb = [p for p in embedding_parameters(trainable) if p.requires_grad]
    dense = dense_parameters(trainable)
    if cfg.embedding_optimizer == "dense" or not emb:
        dense = dense + emb
    else:
        from torchrec.optim import RowWiseAdagrad

        optimizers = {"rowwise_adagrad": RowWiseAdagrad, "adagrad": torch.optim.Adagrad, "sgd": torch.optim.SGD}
        if cfg.embedding_optimizer not in optimizers:
            raise ValueError(f"unknown optim.embedding_optimizer '{cfg.embedding_optimizer}'; choose from {[*optimizers, 'dense']}")
        _apply_optimizer_in_backward(optimizers[cfg.embedding_optimizer], emb, {"lr": cfg.embedding_lr})
    return torch.optim.AdamW(dense, lr=cfg.lr, weight_decay=cfg.weight_decay)


@dataclass
class FitResult:
    val: dict[str, Any]
    test: dict[str, Any]
    best_epoch: int
    epochs_run: int
    epoch_seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)

    def as_metrics(self) -> dict[str, Any]:
        """The metrics.json fields every run shares (train and distill)."""
        return {
            "best_epoch": self.best_epoch,
            "epochs_run": self.epochs_run,
            "epoch_seconds": self.epoch_seconds,
            "val": self.val,
            "test": self.test,
            "history": self.history,
        }


def fit(
    trainable: nn.Module,
    predictor: nn.Module,
    loss_fn: LossFn,
    data: RecData,
    train_cfg: TrainConfig,
    optim_cfg: OptimConfig,
    generator: torch.Generator,
    on_best: Optional[Callable[[nn.Module, int, dict], None]] = None,
    description: str = "train",
) -> FitResult:
    optimizer = make_optimizer(trainable, optim_cfg)
    warm_users = data.warm_users()
    best_auc, best_epoch, best_state, stale = -math.inf, -1, None, 0
    history: list[dict[str, Any]] = []
    step = 0
    seconds: list[float] = []
    for epoch in range(train_cfg.epochs):
        trainable.train()
        start = time.perf_counter()
        n_batches = data.train.num_batches(train_cfg.batch_size)
        if train_cfg.max_steps_per_epoch:
            n_batches = min(n_batches, train_cfg.max_steps_per_epoch)
        bar = tqdm(total=n_batches, desc=f"{description} epoch {epoch}", disable=not train_cfg.progress, leave=False, mininterval=1.0)
        loss_sum = 0.0
        for i, batch in enumerate(data.train.batches(train_cfg.batch_size, shuffle=True, generator=generator)):
            if i >= n_batches:
                break
            loss, terms = loss_fn(batch, step)
            for name, value in {"total": loss, **terms}.items():
                if not torch.isfinite(value).all():
                    raise NonFiniteLossError(step, name, float(value.detach().float().mean()))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach())
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / (i + 1):.4f}")
        bar.close()
        seconds.append(time.perf_counter() - start)
        val = split_metrics(predict(predictor, data.val, train_cfg.eval_batch_size), data.val, warm_users)
        history.append({"epoch": epoch, "train_loss": loss_sum / max(n_batches, 1), "val_auc": val["auc"], "seconds": seconds[-1]})
        if train_cfg.progress:
            print(f"{description} epoch {epoch}: train loss {history[-1]['train_loss']:.4f}  val AUC {val['auc']:.4f}  ({seconds[-1]:.1f}s)")
        if val["auc"] > best_auc:
            best_auc, best_epoch, best_val, stale = val["auc"], epoch, val, 0
            best_state = copy.deepcopy(predictor.state_dict())
            if on_best is not None:
                on_best(predictor, epoch, val)
        else:
            stale += 1
            if stale >= train_cfg.patience:
                break
    assert best_state is not None, "no epoch ran"
    predictor.load_state_dict(best_state)
    test = split_metrics(predict(predictor, data.test, train_cfg.eval_batch_size), data.test, warm_users)
    return FitResult(val=best_val, test=test, best_epoch=best_epoch, epochs_run=len(history), epoch_seconds=float(np.mean(seconds)), history=history)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=float))
    tmp.replace(path)

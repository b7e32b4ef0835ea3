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
from recsys_committee.train.distributed import DistContext
from recsys_committee.train.evaluate import predict, split_metrics

LossFn = Callable[[RecBatch, int], tuple[torch.Tensor, dict[str, torch.Tensor]]]
Evaluate = Callable[[nn.Module, str], dict[str, Any]]


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
    return mark_scheduled(torch.optim.AdamW(dense, lr=cfg.lr, weight_decay=cfg.weight_decay))


def mark_scheduled(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Tag the dense optimiser's groups as the ones ``optim.schedule`` drives. Why a tag: under
    DMP the loop gets a CombinedOptimizer whose groups also hold the fused table optimisers,
    which must keep ``embedding_lr``."""
    for group in optimizer.param_groups:
        group["base_lr"] = group["lr"]
    return optimizer


def lr_factor(step: int, total_steps: int, cfg: OptimConfig) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based) of a run of ``total_steps``.

    Why a pure function of the step: a resumed run (checkpoint restore) lands on exactly the
    learning rate it would have had, with no scheduler state to save."""
    if cfg.schedule == "constant":
        return 1.0
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    decay_steps = max(total_steps - cfg.warmup_steps, 1)
    progress = min((step - cfg.warmup_steps) / decay_steps, 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Scale the groups ``mark_scheduled`` tagged; every other group is left alone."""
    for group in optimizer.param_groups:
        if "base_lr" in group:
            group["lr"] = group["base_lr"] * factor


@dataclass
class FitResult:
    val: dict[str, Any]
    test: dict[str, Any]
    best_epoch: int
    epochs_run: int
    epoch_seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0  # the step counter at the end (resumed runs included)
    resumed_from_step: Optional[int] = None

    def as_metrics(self) -> dict[str, Any]:
        """The metrics.json fields every run shares (train and distill)."""
        return {
            "best_epoch": self.best_epoch,
            "epochs_run": self.epochs_run,
            "epoch_seconds": self.epoch_seconds,
            "val": self.val,
            "test": self.test,
            "history": self.history,
            "steps": self.steps,
        }


@dataclass
class LoopState:
    """Everything needed to continue a run exactly where it stopped: the step counter, the data
    position (epoch, batches done in it, and the shuffling generator's state at the epoch's
    start, so the epoch's order is rebuilt identically) and the model-selection bookkeeping."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    epoch_generator_state: Optional[torch.Tensor] = None
    epoch_loss_sum: float = 0.0  # over the batches of this epoch done so far (the logged train loss)
    best_auc: float = -math.inf
    best_epoch: int = -1
    best_val: Optional[dict[str, Any]] = None
    stale: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    resumed_from_step: Optional[int] = None


class Checkpointer:
    """What ``fit`` needs from a checkpoint store (see train/dist_checkpoint.py)."""

    every: int = 0

    def restore(self) -> Optional[tuple[LoopState, Optional[dict[str, Any]]]]:
        """(loop state, best predictor state) of the latest checkpoint, or None for a fresh run."""
        return None

    def save(self, state: LoopState, best_state: Optional[dict[str, Any]]) -> None:
        raise NotImplementedError


def fit(
    trainable: nn.Module,
    predictor: nn.Module,
    loss_fn: LossFn,
    data: Any,  # RecData, or a domain's data with the same train-split interface (see docstring)
    train_cfg: TrainConfig,
    optim_cfg: OptimConfig,
    generator: torch.Generator,
    on_best: Optional[Callable[[nn.Module, int, dict], None]] = None,
    description: str = "train",
    ctx: Optional[DistContext] = None,
    optimizer: Optional[torch.optim.Optimizer] = None,
    checkpointer: Optional[Checkpointer] = None,
    on_step: Optional[Callable[[LoopState], None]] = None,
    evaluate: Optional[Evaluate] = None,
    metric: str = "auc",
) -> FitResult:
    """Distributed runs pass ``ctx`` (rows per rank, gathered evaluation), the optimizer built
    for the sharded model and a ``checkpointer``; everything else is the same loop.

    ``data`` needs ``train.num_batches/batches`` (and ``val``/``test`` for the default
    evaluation). Another domain (vision) passes ``evaluate(predictor, "val" | "test") -> metrics``
    and the name of the ``metric`` it selects on (higher is better); the default is the
    recommendation evaluation (AUC over all rows, warm and cold users)."""
    ctx = ctx or DistContext.single()
    optimizer = optimizer or make_optimizer(trainable, optim_cfg)
    if evaluate is None:
        warm_users = data.warm_users()

        def evaluate(model: nn.Module, split: str) -> dict[str, Any]:
            dataset = getattr(data, split)
            return split_metrics(predict(model, dataset, train_cfg.eval_batch_size, ctx), dataset, warm_users)
    st, best_state = LoopState(), None
    restored = checkpointer.restore() if checkpointer is not None else None
    if restored is not None:
        st, best_state = restored
        st.resumed_from_step = st.step
        if ctx.is_main and train_cfg.progress:
            print(f"{description}: resumed at step {st.step} (epoch {st.epoch}, batch {st.batch_in_epoch})")
    show = train_cfg.progress and ctx.is_main
    while st.epoch < train_cfg.epochs:
        trainable.train()
        start = time.perf_counter()
        if st.batch_in_epoch == 0 or st.epoch_generator_state is None:
            st.epoch_generator_state = generator.get_state()
        else:
            generator.set_state(st.epoch_generator_state)  # rebuild this epoch's order
        n_batches = data.train.num_batches(train_cfg.batch_size, rows=ctx.train_rows)
        if train_cfg.max_steps_per_epoch:
            n_batches = min(n_batches, train_cfg.max_steps_per_epoch)
        bar = tqdm(total=n_batches, initial=st.batch_in_epoch, desc=f"{description} epoch {st.epoch}", disable=not show, leave=False, mininterval=1.0)
        loss_sum, seen = (st.epoch_loss_sum, st.batch_in_epoch) if st.batch_in_epoch else (0.0, 0)
        batches = data.train.batches(train_cfg.batch_size, shuffle=True, generator=generator, rows=ctx.train_rows, start=st.batch_in_epoch)
        total_steps = n_batches * train_cfg.epochs  # what the schedule decays over
        for batch in batches:
            if st.batch_in_epoch >= n_batches:
                break
            if optim_cfg.schedule != "constant":
                set_lr(optimizer, lr_factor(st.step, total_steps, optim_cfg))
            loss, terms = loss_fn(batch.to(ctx.device), st.step)
            for name, value in {"total": loss, **terms}.items():
                if not torch.isfinite(value).all():
                    raise NonFiniteLossError(st.step, name, float(value.detach().float().mean()))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach())
            seen += 1
            st.epoch_loss_sum = loss_sum
            st.step += 1
            st.batch_in_epoch += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}")
            if on_step is not None:
                on_step(st)
            if checkpointer is not None and checkpointer.every and st.step % checkpointer.every == 0 and st.batch_in_epoch < n_batches:
                checkpointer.save(st, best_state)
        bar.close()
        st.seconds.append(time.perf_counter() - start)
        val = evaluate(predictor, "val")
        st.history.append({"epoch": st.epoch, "step": st.step, "train_loss": loss_sum / max(seen, 1), f"val_{metric}": val[metric], "seconds": st.seconds[-1]})
        if show:
            print(f"{description} epoch {st.epoch}: train loss {st.history[-1]['train_loss']:.4f}  val {metric} {val[metric]:.4f}  ({st.seconds[-1]:.1f}s)")
        stop = False
        if val[metric] > st.best_auc:  # best_auc: the best validation value of ``metric``
            st.best_auc, st.best_epoch, st.best_val, st.stale = val[metric], st.epoch, val, 0
            best_state = copy.deepcopy(predictor.state_dict())
            if on_best is not None:
                on_best(predictor, st.epoch, val)
        else:
            st.stale += 1
            stop = st.stale >= train_cfg.patience
        st.epoch, st.batch_in_epoch, st.epoch_generator_state, st.epoch_loss_sum = st.epoch + 1, 0, None, 0.0
        if checkpointer is not None:
            checkpointer.save(st, best_state)
        if stop:
            break
    assert best_state is not None and st.best_val is not None, "no epoch ran"
    predictor.load_state_dict(best_state)
    test = evaluate(predictor, "test")
    return FitResult(
        val=st.best_val, test=test, best_epoch=st.best_epoch, epochs_run=len(st.history),
        epoch_seconds=float(np.mean(st.seconds)), history=st.history, steps=st.step, resumed_from_step=st.resumed_from_step,
    )


def write_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=float))
    tmp.replace(path)

"""One training loop, read top to bottom: batch -> loss -> step -> validate -> keep the best.

Why one loop for every run: plain training and committee distillation, in every domain, are
"minimise a loss over batches, select the epoch with the best validation metric, report test
metrics of that epoch". The runner passes the loss (a model's task loss, or the committee's),
the predictor (the model, or the student), the explicitly built optimisers and the domain's
evaluation. Test metrics are computed once, on the best-validation weights.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Optional

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from recsys_committee.committee.config import NonFiniteLossError
from recsys_committee.progress import on_terminal
from recsys_committee.train.config import OptimConfig, TrainConfig
from recsys_committee.train.distributed import DistContext
from recsys_committee.train.input_prefetch import InputDistPrefetch
from recsys_committee.train.optimizers import Optimizers

WARMUP_BATCHES = 10  # batches of an epoch left out of its steady throughput (lazy inits, first reads)
LossFn = Callable[[Any, int], tuple[torch.Tensor, dict[str, torch.Tensor]]]
Evaluate = Callable[[nn.Module, str], dict[str, Any]]


def lr_factor(step: int, total_steps: int, cfg: OptimConfig) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based) of a run of ``total_steps``:
    1 for ``constant``; linear warm-up then cosine decay to 0 for ``cosine``."""
    if cfg.schedule == "constant":
        return 1.0
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    decay_steps = max(total_steps - cfg.warmup_steps, 1)
    progress = min((step - cfg.warmup_steps) / decay_steps, 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(dense: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int, start_step: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` over ``lr_factor``, positioned at ``start_step``. Why it needs no saved state:
    the factor is a pure function of the step, so a resumed run (the loop state carries the step)
    rebuilds the scheduler where it was and lands on exactly the same learning rate; the base
    rate is reset from the config (``lr``, or a group's ``lr_by_module`` rate), never taken from a
    restored optimiser."""
    for group in dense.param_groups:
        group["initial_lr"] = group.get("base_lr", cfg.lr)
    return torch.optim.lr_scheduler.LambdaLR(dense, lambda step: lr_factor(step, total_steps, cfg), last_epoch=start_step - 1)


def with_next(items: Iterator[Any]) -> Iterator[tuple[Any, Optional[Any]]]:
    """(item, the item after it or None): the loop sees one batch ahead (read already by the
    data's own read-ahead) to issue its input distribution early."""
    it = iter(items)
    current = next(it, _END)
    while current is not _END:
        following = next(it, _END)
        yield current, (None if following is _END else following)
        current = following


_END = object()


def preemptions() -> Optional[int]:
    """Times the kernel took the core from this thread (involuntary context switches; Linux).
    Why in the history: ranks in lockstep wait for each other, so on a small machine every
    process that wakes on a rank's core (other ranks' threads, a cluster's daemons) costs
    throughput; this is how often that happened during the steady part of an epoch."""
    import resource

    if not hasattr(resource, "RUSAGE_THREAD"):
        return None
    return resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw


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
    prefetched_steps: int = 0  # steps (of this process) whose sparse input was distributed a step early

    def as_metrics(self) -> dict[str, Any]:
        """The metrics.json fields every run shares (train and distill)."""
        return {
            "best_epoch": self.best_epoch,
            "epochs_run": self.epochs_run,
            "epoch_seconds": self.epoch_seconds,
            "val": self.val,
            "test": self.test,
            "history": self.history,
            "prefetched_steps": self.prefetched_steps,
            "steps": self.steps,
        }


@dataclass
class LoopState:
    """Everything needed to continue a run exactly where it stopped: the step counter, the data
    position (epoch, batches done in it, and the shuffling generator's state at the epoch's
    start, so the epoch's order is rebuilt identically) and the model-selection bookkeeping.

    Most of it is the same on every rank; ``RANK_LOCAL`` names what is not, and a distributed
    checkpoint keeps those fields once per rank (see ``rank_local``)."""

    # Why these differ between ranks: a streamed split (data/prepared/stream.py) draws the permutations
    # of THIS rank's row groups and windows from the shuffling generator, so from the end of
    # epoch 0 on every rank's generator state is its own; the train-loss sum is over this
    # rank's batches. Restoring rank 0's values on every rank reorders the other ranks' epochs.
    RANK_LOCAL: ClassVar[tuple[str, ...]] = ("epoch_generator_state", "epoch_loss_sum")

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

    def rank_local(self) -> dict[str, Any]:
        """This rank's own part of the state, to be saved by every rank (not only the main one)."""
        return {name: getattr(self, name) for name in self.RANK_LOCAL}

    def restore_rank_local(self, saved: dict[str, Any]) -> None:
        """Take back this rank's part saved by ``rank_local``; a field the checkpoint lacks (a
        checkpoint from before it was saved per rank) keeps the main rank's value."""
        for name in self.RANK_LOCAL:
            if name in saved:
                setattr(self, name, saved[name])


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
    data: Any,
    train_cfg: TrainConfig,
    generator: torch.Generator,
    optimizers: Optimizers,
    evaluate: Evaluate,
    metric: str = "auc",
    on_best: Optional[Callable[[nn.Module, int, dict], None]] = None,
    description: str = "train",
    ctx: Optional[DistContext] = None,
    checkpointer: Optional[Checkpointer] = None,
    on_step: Optional[Callable[[LoopState], None]] = None,
    prefetch: Optional[InputDistPrefetch] = None,
) -> FitResult:
    """``data.train`` needs ``num_batches(batch_size, rows=)`` and ``batches(...)``;
    ``evaluate(predictor, "val" | "test")`` returns metrics with ``metric`` (higher is better).
    Distributed runs pass ``ctx`` (rows per rank), the sharded model's optimisers, a
    ``checkpointer`` and maybe a ``prefetch`` (the next batch's input distribution is issued
    during this step); everything else is the same loop."""
    ctx = ctx or DistContext.single()
    optimizer = optimizers.optimizer
    st, best_state = LoopState(), None
    restored = checkpointer.restore() if checkpointer is not None else None
    if restored is not None:
        st, best_state = restored
        st.resumed_from_step = st.step
        if ctx.is_main and train_cfg.progress:
            print(f"{description}: resumed at step {st.step} (epoch {st.epoch}, batch {st.batch_in_epoch})")
    show = train_cfg.progress and ctx.is_main
    n_batches = data.train.num_batches(train_cfg.batch_size, rows=ctx.train_rows)
    if train_cfg.max_steps_per_epoch:
        n_batches = min(n_batches, train_cfg.max_steps_per_epoch)
    if n_batches == 0:
        raise ValueError("the training split has no full batch")  # the runner checks splits first
    scheduler = make_scheduler(optimizers.dense, optimizers.cfg, total_steps=n_batches * train_cfg.epochs, start_step=st.step)
    while st.epoch < train_cfg.epochs:
        trainable.train()
        start = time.perf_counter()
        if st.epoch_generator_state is None:
            st.epoch_generator_state = generator.get_state()
        else:
            generator.set_state(st.epoch_generator_state)  # rebuild this epoch's order (a resumed run: mid-epoch or at its start)
        bar = tqdm(total=n_batches, initial=st.batch_in_epoch, desc=f"{description} epoch {st.epoch}", disable=not (show and on_terminal()), leave=False, mininterval=1.0)
        loss_sum, seen = (st.epoch_loss_sum, st.batch_in_epoch) if st.batch_in_epoch else (0.0, 0)
        steady_from, steady_start, preempted_before = seen + WARMUP_BATCHES, None, None  # throughput after the first batches' one-off costs
        batches = data.train.batches(train_cfg.batch_size, shuffle=True, generator=generator, rows=ctx.train_rows, start=st.batch_in_epoch)
        # at most the batches the loop always drew (its n_batches and the one that ends the epoch),
        # so the data generator's state at the epoch's end is what it was without the look-ahead
        drawn = itertools.islice(batches, n_batches + 1 - st.batch_in_epoch)
        for batch, following in with_next(b.to(ctx.device) for b in drawn):
            if st.batch_in_epoch >= n_batches:
                break
            ahead = prefetch and following is not None and st.batch_in_epoch + 1 < n_batches
            if ahead:
                prefetch.start(following)  # every rank: the same batch index, the same point
            loss, terms = loss_fn(batch, st.step)
            if ahead:
                prefetch.launch()  # its values all-to-all runs during this backward
            for name, value in {"total": loss, **terms}.items():
                if not torch.isfinite(value).all():
                    raise NonFiniteLossError(st.step, name, float(value.detach().float().mean()))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()  # the fused table optimiser already stepped inside backward
            scheduler.step()
            loss_sum += float(loss.detach())
            seen += 1
            st.epoch_loss_sum = loss_sum
            st.step += 1
            st.batch_in_epoch += 1
            if seen == steady_from:
                steady_start, preempted_before = time.perf_counter(), preemptions()
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}")
            if on_step is not None:
                on_step(st)
            if checkpointer is not None and checkpointer.every and st.step % checkpointer.every == 0 and st.batch_in_epoch < n_batches:
                checkpointer.save(st, best_state)
        bar.close()
        train_end, preempted = time.perf_counter(), preemptions()
        st.seconds.append(train_end - start)
        val = evaluate(predictor, "val")
        st.history.append({"epoch": st.epoch, "step": st.step, "train_loss": loss_sum / max(seen, 1), f"val_{metric}": val[metric], "seconds": st.seconds[-1]})
        if steady_start is not None and seen > steady_from:
            st.history[-1].update(steady_batches=seen - steady_from, steady_seconds=train_end - steady_start)
            if preempted is not None and preempted_before is not None:
                st.history[-1]["steady_preemptions_per_s"] = (preempted - preempted_before) / (train_end - steady_start)
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
        # the next epoch's shuffling state goes into the epoch-end checkpoint: a run resumed there
        # draws the order the unbroken run draws (with None it drew from a freshly seeded generator)
        st.epoch, st.batch_in_epoch, st.epoch_generator_state, st.epoch_loss_sum = st.epoch + 1, 0, generator.get_state(), 0.0
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
        prefetched_steps=prefetch.served if prefetch is not None else 0,
    )

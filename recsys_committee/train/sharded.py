"""The sharded training setup shared by ``train`` and ``distill`` under Ray Train / torchrun.

Why one place: both commands shard the same way (TorchRec planner + DMP), build the same
optimizer (FBGEMM-fused for the tables, AdamW for the replicated rest), checkpoint with DCP
and turn the sharded best weights back into the plain single-file model users deploy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from recsys_committee.train.checkpoint import save_checkpoint
from recsys_committee.train.config import RunConfig, dump_config
from recsys_committee.train.dist_checkpoint import DistCheckpointer
from recsys_committee.train.distributed import DistContext, describe_plan, is_teacher_key, shard_model
from recsys_committee.train.loop import make_optimizer, mark_scheduled, write_json
from recsys_committee.train.plots import plot_learning_curve


@dataclass
class ShardedSetup:
    model: nn.Module  # the DMP-wrapped module (call it for the training loss)
    optimizer: torch.optim.Optimizer
    checkpointer: DistCheckpointer


def sharded_optimizer(model: nn.Module, cfg: RunConfig) -> torch.optim.Optimizer:
    """DMP's fused optimizer for the sharded tables + AdamW for the replicated parameters,
    both keyed by parameter name (what DCP checkpoints and reshards)."""
    from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper

    # tables of the sharded modules are updated by the fused kernels (a rank holds only some of them)
    sharded = tuple(f"{path}." for path in model.plan.plan)
    dense = {n: p for n, p in model.named_parameters() if p.requires_grad and not n.startswith(sharded)}
    adam = KeyedOptimizerWrapper(dense, lambda params: mark_scheduled(torch.optim.AdamW(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)))
    # The frozen teachers' sharded tables get fused optimisers from DMP too; they never receive
    # a gradient, so leave them out: nothing to step, nothing to checkpoint.
    trainable = [(name, opt) for name, opt in model.fused_optimizer.optimizers if not is_teacher_key(f"{name}.")]
    combined = CombinedOptimizer([*[(f"fused.{n}", o) for n, o in trainable], ("dense", adam)])
    combined.lazy_part = adam  # AdamW creates its state at the first step: see dist_checkpoint.load_into
    return combined


def setup_sharded(module: nn.Module, predictor: nn.Module, cfg: RunConfig, launch: Launch, out: Path, counter: Any = None) -> ShardedSetup:
    """``module`` holds every trainable table (``predictor`` is the part evaluated and kept);
    ``counter`` (the committee's ForwardCounter) is checkpointed per rank."""
    make_optimizer(module, cfg.optim)  # only for its in-backward table optimiser, which DMP fuses into FBGEMM
    ctx = launch.ctx
    model = shard_model(module, ctx, cfg.dist.sharding_type)
    optimizer = sharded_optimizer(model, cfg)
    checkpointer = DistCheckpointer(
        out / "checkpoints", model, predictor, optimizer, ctx, every=cfg.train.checkpoint_every, restore_from=launch.restore_from, report=launch.report,
        get_counts=counter.totals if counter is not None else None, add_counts=counter.add_totals if counter is not None else None,
    )
    return ShardedSetup(model, optimizer, checkpointer)


def export_sharded(
    predictor: nn.Module, build_plain: Callable[[], nn.Module], path: Path, payload: Callable[[dict], dict[str, Any]], ctx: DistContext
) -> None:
    """Write the sharded predictor's weights with DCP next to ``path``, then rank 0 reads every
    shard back into a plain model from ``build_plain`` and saves ``payload(state_dict)`` at
    ``path`` (the same single file a one-process run writes)."""
    import torch.distributed.checkpoint as dcp

    shards = path.with_name(path.stem + "_dcp")
    dcp.save({"model": predictor.state_dict()}, checkpoint_id=str(shards))
    ctx.barrier()
    if ctx.is_main:
        plain = build_plain()
        state = {"model": plain.state_dict()}
        dcp.load(state, checkpoint_id=str(shards), no_dist=True)
        plain.load_state_dict(state["model"])
        save_checkpoint(path, payload(plain.state_dict()))
    ctx.barrier()


@dataclass
class Launch:
    """How a ``train``/``distill`` run was launched. The default is one plain process. Ray
    Train workers pass their context, the checkpoint to resume, the report callback and the
    fault drill's step hook; such a run is sharded even at world size 1 (DCP checkpoints)."""

    ctx: DistContext = field(default_factory=DistContext.single)
    restore_from: Optional[str | Path] = None
    report: Optional[Callable[[Path, Any], None]] = None
    on_step: Optional[Callable[[Any], None]] = None

    @property
    def sharded(self) -> bool:
        return self.ctx.distributed or self.restore_from is not None or self.report is not None


def begin_run(cfg: RunConfig, out: Path, launch: Optional[Launch]) -> Launch:
    """Rank 0 creates OUT and writes the run's config."""
    launch = launch or Launch()
    if launch.ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, out / "config.yaml")
    return launch


def finish_run(metrics: dict[str, Any], result: Any, sharded_model: Optional[nn.Module], out: Path, ctx: DistContext, title: str) -> dict[str, Any]:
    """Add the sharding facts, then rank 0 writes metrics.json and the learning curve."""
    if sharded_model is not None:
        metrics["sharding_plan"] = describe_plan(sharded_model)
        metrics["resumed_from_step"] = result.resumed_from_step
    if ctx.is_main:
        write_json(out / "metrics.json", metrics)
        plot_learning_curve(result.history, out / "curve.png", title)
    return metrics

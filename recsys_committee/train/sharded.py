"""The sharded training setup shared by ``train`` and ``distill`` under Ray Train / torchrun.

Why one place: both commands shard the same way (TorchRec planner + DMP), build the same
optimizer (FBGEMM-fused for the tables, AdamW for the replicated rest), checkpoint with DCP
and turn the sharded best weights back into the plain single-file model users deploy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from recsys_committee.train.checkpoint import save_checkpoint
from recsys_committee.train.config import RunConfig
from recsys_committee.train.dist_checkpoint import DistCheckpointer
from recsys_committee.train.distributed import DistContext, shard_model
from recsys_committee.train.loop import make_optimizer


@dataclass
class ShardedSetup:
    model: nn.Module  # the DMP-wrapped module (call it for the training loss)
    optimizer: torch.optim.Optimizer
    checkpointer: DistCheckpointer


def sharded_optimizer(model: nn.Module, cfg: RunConfig) -> torch.optim.Optimizer:
    """DMP's fused optimizer for the sharded tables + AdamW for the replicated parameters,
    both keyed by parameter name (what DCP checkpoints and reshards)."""
    from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper

    fused = {id(p) for group in model.fused_optimizer.param_groups for p in group["params"]}
    dense = {n: p for n, p in model.named_parameters() if p.requires_grad and id(p) not in fused}
    adam = KeyedOptimizerWrapper(dense, lambda params: torch.optim.AdamW(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay))
    return CombinedOptimizer([("fused", model.fused_optimizer), ("dense", adam)])


def setup_sharded(
    module: nn.Module,
    predictor: nn.Module,
    cfg: RunConfig,
    ctx: DistContext,
    out: Path,
    restore_from: Optional[str | Path] = None,
    report: Optional[Callable[[Path, Any], None]] = None,
) -> ShardedSetup:
    """``module`` holds every trainable table (``predictor`` is the part evaluated and kept)."""
    make_optimizer(module, cfg.optim)  # only for its in-backward table optimiser, which DMP fuses into FBGEMM
    model = shard_model(module, ctx, cfg.dist.sharding_type)
    optimizer = sharded_optimizer(model, cfg)
    checkpointer = DistCheckpointer(
        out / "checkpoints", model, predictor, optimizer, ctx, every=cfg.train.checkpoint_every, restore_from=restore_from, report=report
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

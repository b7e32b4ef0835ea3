"""The sharded training setup shared by ``train`` and ``distill`` under Ray Train / torchrun.

Why one place: both commands shard the same way (TorchRec planner + DMP), build the same
optimisers (FBGEMM-fused for the tables, AdamW for the replicated rest), checkpoint with DCP
and turn the sharded best weights back into the plain single-file model users deploy.
TorchRec is imported inside the functions: only a sharded (Ray Train) run gets here.
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
from recsys_committee.train.distributed import DistContext, Launch, shard_model
from recsys_committee.train.optimizers import Optimizers, attach_fused_sparse_optimizer, sharded_optimizers


@dataclass
class ShardedSetup:
    model: nn.Module  # the DMP-wrapped module (call it for the training loss)
    optimizers: Optimizers
    checkpointer: DistCheckpointer


def setup_sharded(
    module: nn.Module, predictor: nn.Module, trainable: list[nn.Parameter], sparse: list[nn.Parameter],
    is_frozen_key: Callable[[str], bool], cfg: RunConfig, launch: Launch, out: Path, counter: Any = None,
) -> ShardedSetup:
    """``module`` holds every trainable table (``predictor`` is the part evaluated and kept);
    ``trainable``/``sparse`` are its parameters that train / the tables among them; ``counter``
    (the committee's ForwardCounter) is checkpointed per rank."""
    attach_fused_sparse_optimizer(sparse, cfg.optim)  # before DMP: it fuses them into FBGEMM kernels
    ctx = launch.ctx
    model = shard_model(module, ctx, cfg.dist.sharding_type)
    optimizers = sharded_optimizers(model, trainable, is_frozen_key, cfg.optim)
    checkpointer = DistCheckpointer(
        out / "checkpoints", model, predictor, optimizers.optimizer, ctx, every=cfg.train.checkpoint_every, restore_from=launch.restore_from,
        report=launch.report, is_frozen_key=is_frozen_key,
        get_counts=counter.totals if counter is not None else None, add_counts=counter.add_totals if counter is not None else None,
    )
    return ShardedSetup(model, optimizers, checkpointer)


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

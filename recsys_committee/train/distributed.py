"""The distributed context of one training process: who am I, how many of us, how to talk.

Why one small object instead of ``torch.distributed`` calls scattered through the loop: the same
loop runs in one process (tests, a GPU box), under ``torchrun``-style launchers and under Ray
Train. ``DistContext.single()`` makes every collective below a no-op, so the single-process
path stays the readable default and the distributed path differs only where it must:
which rows a rank reads, gathering predictions before AUC (never averaging AUC across ranks),
and sharding the embedding tables with TorchRec's planner + ``DistributedModelParallel``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist
from torch import nn

SHARDING_TYPES = ("table_wise", "row_wise", "column_wise", "table_row_wise", "data_parallel")


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @classmethod
    def single(cls, device: str | torch.device = "cpu") -> "DistContext":
        return cls(0, 1, torch.device(device))

    @classmethod
    def from_process_group(cls, device: Optional[torch.device] = None) -> "DistContext":
        """The context of an initialised default process group (Ray Train or torchrun made it)."""
        if not (dist.is_available() and dist.is_initialized()):
            return cls.single(device or "cpu")
        return cls(dist.get_rank(), dist.get_world_size(), device or torch.device("cpu"))

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ----------------------------------------------------------------- collectives
    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def max_int(self, value: int) -> int:
        if not self.distributed:
            return int(value)
        t = torch.tensor([int(value)], dtype=torch.long)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    def sum_ints(self, values: list[int]) -> list[int]:
        if not self.distributed or not values:
            return [int(v) for v in values]
        t = torch.tensor(values, dtype=torch.long)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return [int(v) for v in t.tolist()]

    def all_gather_cat(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate equal-length tensors from every rank, rank order (CPU, any dtype)."""
        if not self.distributed:
            return tensor
        tensor = tensor.contiguous().cpu()
        out = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(out, tensor)
        return torch.cat(out)

    # ----------------------------------------------------------------- rows
    def train_rows(self, order: torch.Tensor) -> torch.Tensor:
        """This rank's share of one epoch's (globally shuffled) order: every rank gets the same
        number of rows, so every rank runs the same number of equal batches (the sharded
        embeddings' all-to-alls need all ranks in step). At most world_size-1 rows are dropped."""
        if not self.distributed:
            return order
        usable = (order.numel() // self.world_size) * self.world_size
        return order[:usable][self.rank :: self.world_size]

    def eval_rows(self, n: int) -> tuple[torch.Tensor, int]:
        """Rows r, r+W, ... padded (with row 0) to the same length on every rank; returns the
        rows and how many are real. ``gather_predictions`` undoes the interleave."""
        if not self.distributed:
            return torch.arange(n), n
        per_rank = (n + self.world_size - 1) // self.world_size
        rows = torch.arange(self.rank, n, self.world_size)
        real = rows.numel()
        if real < per_rank:
            rows = torch.cat([rows, rows.new_zeros(per_rank - real)])
        return rows, real

    def contiguous_share(self, n: int, rank: Optional[int] = None) -> tuple[int, int, int]:
        """(first row, real rows, padded length) of a rank's contiguous share of n rows: what a
        streamed split evaluates (each rank reads one range of its files)."""
        rank = self.rank if rank is None else rank
        per = (n + self.world_size - 1) // self.world_size
        first = min(rank * per, n)
        return first, max(0, min(per, n - first)), per

    def gather_contiguous(self, local: torch.Tensor, n: int) -> torch.Tensor:
        """Inverse of ``contiguous_share``: every rank's padded share -> the n rows in order."""
        if not self.distributed:
            return local[:n]
        everyone = self.all_gather_cat(local).view(self.world_size, local.shape[0], *local.shape[1:])
        return torch.cat([everyone[r, : self.contiguous_share(n, r)[1]] for r in range(self.world_size)])

    def gather_predictions(self, local: torch.Tensor, n: int) -> torch.Tensor:
        """Inverse of ``eval_rows``: every rank's predictions -> the full split in row order."""
        if not self.distributed:
            return local[:n]
        per_rank = local.shape[0]
        stacked = self.all_gather_cat(local).view(self.world_size, per_rank, *local.shape[1:])
        return stacked.transpose(0, 1).reshape(-1, *local.shape[1:])[:n]


@dataclass
class Launch:
    """How a ``train``/``distill`` run was launched. The default is one plain process. Ray
    Train workers pass their context, the checkpoint to resume, the report callback and the
    fault drill's step hook; such a run is sharded even at world size 1 (DCP checkpoints).
    ``out_prepared``: the driver already checked (and, with ``--overwrite``, cleared) OUT before
    launching the workers; a worker neither refuses nor clears it (a restarted worker resumes
    into its own OUT)."""

    ctx: DistContext = field(default_factory=DistContext.single)
    restore_from: Optional[str | Path] = None
    report: Optional[Callable[[Path, Any], None]] = None
    on_step: Optional[Callable[[Any], None]] = None
    out_prepared: bool = False

    @property
    def sharded(self) -> bool:
        return self.ctx.distributed or self.restore_from is not None or self.report is not None


def quiet_library_logs() -> None:
    """TorchRec's planner and FBGEMM log every proposal and kernel argument at INFO: keep
    workers' logs readable (warnings and errors still show)."""
    import logging

    for name in ("torchrec", "fbgemm_gpu", "torch.distributed.checkpoint"):
        logging.getLogger(name).setLevel(logging.WARNING)


def shard_model(module: nn.Module, ctx: DistContext, sharding_type: Optional[str] = None) -> nn.Module:
    """Shard every TorchRec embedding collection inside ``module`` across the ranks with
    ``DistributedModelParallel``; the rest is replicated under DDP.

    The plan comes from ``EmbeddingShardingPlanner(Topology(...)).collective_plan`` (rank 0
    plans, everyone gets the same plan) or is forced to one ``sharding_type`` for every table.
    Embedding optimisers set with ``_apply_optimizer_in_backward`` before this call become the
    fused FBGEMM optimisers of the shards. Frozen submodules (the teachers) keep
    ``requires_grad=False`` and are not synchronised by DDP; their tables are sharded too, so a
    teacher too large for one worker still runs (forward only). DDP runs with
    ``find_unused_parameters`` because the gate may skip a teacher, and with it that teacher's
    QA parameters, for a whole step.
    """
    from torchrec.distributed.model_parallel import DefaultDataParallelWrapper, DistributedModelParallel
    from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
    from torchrec.distributed.types import ShardingEnv

    quiet_library_logs()
    if sharding_type is not None and sharding_type not in SHARDING_TYPES:
        raise ValueError(f"unknown sharding type '{sharding_type}'; choose from {list(SHARDING_TYPES)}")
    pg = dist.group.WORLD if dist.is_available() and dist.is_initialized() else None
    env = ShardingEnv.from_process_group(pg) if pg is not None else ShardingEnv.from_local(1, 0)
    if sharding_type in MANUAL_TYPES and ctx.device.type == "cpu":
        plan = manual_plan(module, ctx, sharding_type)  # the CPU planner never proposes row-wise
    else:
        constraints = None
        if sharding_type is not None:
            constraints = {name: ParameterConstraints(sharding_types=[sharding_type]) for name in table_names(module)}
        topology = Topology(world_size=ctx.world_size, compute_device=ctx.device.type)
        planner = EmbeddingShardingPlanner(topology=topology, constraints=constraints)
        if pg is not None:
            plan = planner.collective_plan(module, pg=pg)
        else:
            from torchrec.distributed.sharding_plan import get_default_sharders

            plan = planner.plan(module, sharders=get_default_sharders())
    frozen = frozen_subtrees(module)
    weights = {k: v.detach().clone() for k, v in module.state_dict().items()}
    wrapper = DefaultDataParallelWrapper(static_graph=False, find_unused_parameters=True)
    model = DistributedModelParallel(module, env=env, device=ctx.device, plan=plan, data_parallel_wrapper=wrapper)
    # DMP builds the shards from the table configs, freshly initialised: put the weights the
    # module had (a trained teacher's, the seeded student's) back into every local shard.
    copy_into_shards(model.state_dict(), weights)
    for name, p in model.module.named_parameters():  # sharding must not unfreeze a teacher
        if name.startswith(frozen) and p.is_leaf and p.requires_grad:
            p.requires_grad_(False)
    return model


MANUAL_TYPES = ("row_wise",)


def manual_plan(module: nn.Module, ctx: DistContext, sharding_type: str):
    """A plan built with TorchRec's plan helpers: TorchRec's CPU planner only proposes
    table/column-wise and data-parallel sharding, yet row-wise shards run on CPU (docs/DATA.md), and
    row-wise is what a 1M-row table needs. Every table of every collection is split by rows."""
    from torchrec import EmbeddingBagCollection, EmbeddingCollection
    from torchrec.distributed.sharding_plan import construct_module_sharding_plan, row_wise
    from torchrec.distributed.types import ShardingPlan

    plans = {}
    for path, sub in module.named_modules():
        if isinstance(sub, (EmbeddingBagCollection, EmbeddingCollection)):
            names = [c.name for c in (sub.embedding_bag_configs() if isinstance(sub, EmbeddingBagCollection) else sub.embedding_configs())]
            plans[path] = construct_module_sharding_plan(
                sub, per_param_sharding={n: row_wise(compute_kernel="fused") for n in names},
                local_size=ctx.world_size, world_size=ctx.world_size, device_type=ctx.device.type,
            )
    return ShardingPlan(plans)


def copy_into_shards(sharded: dict, full: dict) -> None:
    """Copy full (unsharded) tensors into a sharded state dict in place: each local shard gets
    the rows/columns its metadata says it holds; replicated tensors are copied whole."""
    from torch.distributed._shard.sharded_tensor import ShardedTensor
    from torch.distributed.tensor import DTensor

    with torch.no_grad():
        for key, target in sharded.items():
            if key not in full:
                continue
            source = full[key]
            if isinstance(target, ShardedTensor):
                for shard in target.local_shards():
                    index = tuple(slice(o, o + n) for o, n in zip(shard.metadata.shard_offsets, shard.metadata.shard_sizes))
                    shard.tensor.copy_(source[index])
            elif isinstance(target, DTensor):  # not produced by the plans we use; refuse rather than guess
                raise TypeError(f"{key}: copying into a DTensor shard is not supported (sharding produced {target.placements})")
            elif isinstance(target, torch.Tensor):
                target.copy_(source)


def frozen_subtrees(module: nn.Module) -> tuple[str, ...]:
    """Path prefixes ("teachers.0.") of the top-most submodules whose parameters are all frozen."""
    prefixes: list[str] = []
    for path, sub in module.named_modules():
        params = list(sub.parameters())
        if not path or not params or any(p.requires_grad for p in params):
            continue
        if not any(path.startswith(q) for q in prefixes):
            prefixes.append(f"{path}.")
    return tuple(prefixes)


def table_names(module: nn.Module) -> list[str]:
    from torchrec import EmbeddingBagCollection, EmbeddingCollection

    names: list[str] = []
    for sub in module.modules():
        if isinstance(sub, EmbeddingBagCollection):
            names += [c.name for c in sub.embedding_bag_configs()]
        elif isinstance(sub, EmbeddingCollection):
            names += [c.name for c in sub.embedding_configs()]
    return names


def describe_plan(model: nn.Module) -> dict[str, dict[str, str]]:
    """{module path: {table: "sharding_type on ranks [...]"}} of a DMP-wrapped model."""
    plan = getattr(model, "plan", None)  # DistributedModelParallel keeps the plan it applied
    if plan is None:
        return {}
    out: dict[str, dict[str, str]] = {}
    for path, module_plan in plan.plan.items():
        out[path] = {
            table: f"{ps.sharding_type} ({ps.compute_kernel}) ranks {ps.ranks}" for table, ps in module_plan.items()
        }
    return out

"""Sharded checkpoints with ``torch.distributed.checkpoint`` (DCP).

Why DCP and not ``torch.save``: under ``DistributedModelParallel`` each worker holds only its
shards of the embedding tables (and of their fused optimizer state). DCP writes every shard
once, with metadata saying which rows/columns it covers, so a checkpoint saved by 2 workers
loads into 1 (or 4): the loader asks for the shards of ITS plan and DCP reads the overlapping
pieces. What goes in: the trainable model state (student, QA, gate; never the frozen
teachers, which come from their own files), the optimizer (dense AdamW + fused embedding
optimizer), the best-validation student, and the loop state (step counter, epoch, batch
position, the epoch's shuffling seed state, model-selection bookkeeping). What differs between
ranks is saved by each rank in its own ``rank-R.pt``: its RNG, its teacher-forward counters and
its part of the loop state (``LoopState.RANK_LOCAL``: a streamed split leaves each rank's
shuffling generator in its own state after an epoch).

A checkpoint directory is complete only when ``COMPLETE`` exists (written last, by rank 0, after
every rank finished): a crash mid-save leaves a directory that is refused by name, never one
that loads half a model. Incompatible or corrupt files raise ``CheckpointError``. The small
per-rank and loop-state files are read weights-only (``torch.load(weights_only=True)``: tensors,
numbers, strings and containers, no code).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException  # a BaseException, not an Exception
from torch import nn

from recsys_committee.train.checkpoint import CheckpointError
from recsys_committee.train.distributed import DistContext
from recsys_committee.train.loop import Checkpointer, LoopState

FORMAT = "diverse-distill-dcp/1"
MARKER = "COMPLETE"
LOOP_FILE = "loop_state.pt"


def load_plain(path: Path) -> Any:
    """A file this module wrote with ``torch.save`` (tensors, numbers, strings, lists, dicts),
    read weights-only: torch's restricted unpickler builds those types and runs no code."""
    return torch.load(path, map_location="cpu", weights_only=True)


def never_frozen(key: str) -> bool:
    return False


def trainable_state(model: nn.Module, is_frozen_key: Callable[[str], bool] = never_frozen) -> dict[str, Any]:
    """The model's state without its frozen parts (the committee says which keys are its
    teachers': they come from their own files and are never checkpointed)."""
    return {k: v for k, v in model.state_dict().items() if not is_frozen_key(k)}


def is_complete(path: Path) -> bool:
    return (path / MARKER).is_file()


def latest_checkpoint(root: Path) -> Optional[Path]:
    done = sorted(p for p in root.glob("step-*") if is_complete(p))
    return done[-1] if done else None


class DistCheckpointer(Checkpointer):
    """Save/restore one run's state with DCP under ``root/step-XXXXXXXX``.

    ``report(path, state)`` is called after each complete save (Ray Train passes the directory
    to ``ray.train.report``); ``restore_from`` is the checkpoint to resume (Ray's
    ``get_checkpoint()``), else the latest complete one under ``root`` if ``resume`` is set.
    """

    def __init__(
        self,
        root: str | Path,
        model: nn.Module,
        predictor: nn.Module,
        optimizer: torch.optim.Optimizer,
        ctx: DistContext,
        every: int = 0,
        restore_from: Optional[str | Path] = None,
        report: Optional[Callable[[Path, LoopState], None]] = None,
        keep: int = 2,
        get_counts: Optional[Callable[[], Any]] = None,
        add_counts: Optional[Callable[[Any], None]] = None,
        is_frozen_key: Callable[[str], bool] = never_frozen,
    ) -> None:
        self.is_frozen_key = is_frozen_key
        self.root = Path(root)
        self.model, self.predictor, self.optimizer, self.ctx = model, predictor, optimizer, ctx
        self.every = every
        self.restore_from = Path(restore_from) if restore_from is not None else None
        self.report = report
        self.keep = keep
        self.get_counts, self.add_counts = get_counts, add_counts

    def latest(self) -> Optional[Path]:
        """The newest complete checkpoint under root (what a rerun would resume), or None."""
        return latest_checkpoint(self.root)

    # ----------------------------------------------------------------------------- save
    def save(self, state: LoopState, best_state: Optional[dict[str, Any]]) -> None:
        path = self.root / f"step-{state.step:08d}"
        if self.ctx.is_main and path.exists():
            shutil.rmtree(path)  # a leftover of a crashed attempt at this same step
        self.ctx.barrier()
        payload = {"model": trainable_state(self.model, self.is_frozen_key), "optim": self.optimizer.state_dict()}
        if best_state is not None:
            payload["best"] = best_state
        dcp.save(payload, checkpoint_id=str(path))
        # each rank's RNG (gate exploration, dropout): a resumed run draws what the unbroken one would;
        # its counters (teacher forwards run on this rank), summed over ranks at the end; and its own
        # loop fields (its shuffling generator: LOOP_FILE below holds only the main rank's)
        per_rank = {"rng": torch.get_rng_state(), "counts": self.get_counts() if self.get_counts else None, "loop": state.rank_local()}
        torch.save(per_rank, path / f"rank-{self.ctx.rank}.pt")
        self.ctx.barrier()
        if self.ctx.is_main:
            loop = dataclasses.asdict(state)
            torch.save(loop, path / LOOP_FILE)
            info = {"format": FORMAT, "step": state.step, "world_size": self.ctx.world_size, "has_best": best_state is not None}
            (path / MARKER).write_text(json.dumps(info))
            self._prune()
        self.ctx.barrier()
        if self.report is not None:
            self.report(path, state)

    def _prune(self) -> None:
        done = sorted(p for p in self.root.glob("step-*") if is_complete(p))
        for old in done[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)

    # ----------------------------------------------------------------------------- restore
    def restore(self) -> Optional[tuple[LoopState, Optional[dict[str, Any]]]]:
        path = self.restore_from
        if path is None:
            return None
        restored = load_into(path, self.model, self.predictor, self.optimizer, self.is_frozen_key)
        # rank r takes over the files of old ranks r, r + W, ... (fewer workers after a resume)
        saved = int(read_info(path).get("world_size", 1))
        for old in range(self.ctx.rank, saved, self.ctx.world_size):
            try:
                per_rank = load_plain(path / f"rank-{old}.pt")
            except Exception as exc:  # noqa: BLE001 - missing, truncated, or more than plain data
                raise CheckpointError(f"checkpoint {path}: rank-{old}.pt is missing, corrupt or not plain data: {exc}") from exc
            if old == self.ctx.rank:  # a new rank beyond the old world keeps its seeded RNG and rank 0's loop fields
                torch.set_rng_state(per_rank["rng"])
                restored[0].restore_rank_local(per_rank.get("loop") or {})
            if self.add_counts and per_rank["counts"] is not None:
                self.add_counts(per_rank["counts"])
        return restored


def read_info(path: Path) -> dict[str, Any]:
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not is_complete(path):
        raise CheckpointError(f"checkpoint {path} is incomplete (no {MARKER} marker: the save was interrupted); resume from an earlier one")
    try:
        info = json.loads((path / MARKER).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint {path}: unreadable {MARKER} marker: {exc}") from exc
    if info.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a {FORMAT} checkpoint (format {info.get('format')!r})")
    return info


def load_into(
    path: str | Path, model: nn.Module, predictor: nn.Module, optimizer: Optional[torch.optim.Optimizer],
    is_frozen_key: Callable[[str], bool] = never_frozen,
) -> tuple[LoopState, Optional[dict[str, Any]]]:
    """Load a DCP checkpoint (saved at any world size) into this process's model/optimizer.
    Collective when the model is sharded: every rank calls it."""
    path = Path(path)
    info = read_info(path)
    try:
        loop = load_plain(path / LOOP_FILE)
        state = LoopState(**loop)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path}: loop state {LOOP_FILE} is corrupt or incompatible: {exc}") from exc
    payload: dict[str, Any] = {"model": trainable_state(model, is_frozen_key)}
    lazy = getattr(optimizer, "lazy_part", None)
    if lazy is not None and not lazy.state:
        # DCP loads in place, so the state must exist first: one zero-gradient step creates it
        # (the weights it might touch are overwritten by the load below)
        lazy.init_state()
        for p in lazy.params.values():
            p.grad = None
    if optimizer is not None:
        payload["optim"] = optimizer.state_dict()
    best_template = None
    if info.get("has_best"):
        best_template = copy.deepcopy(predictor.state_dict())  # not the live weights: loaded in place
        payload["best"] = best_template
    try:
        dcp.load(payload, checkpoint_id=str(path))
    except (Exception, CheckpointException) as exc:  # missing shard, truncated file, another model's keys/shapes
        raise CheckpointError(f"checkpoint {path} is corrupt or does not fit this model: {type(exc).__name__}: {exc}") from exc
    try:  # dcp.load filled the model's tensors in place (state_dict tensors alias the weights)
        if optimizer is not None:
            optimizer.load_state_dict(payload["optim"])
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} does not fit this model: {exc}") from exc
    return state, payload.get("best")

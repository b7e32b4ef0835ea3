"""Atomic, validated checkpoints.

Why: a crash or a NaN must never cost the last good model, and a corrupt or foreign file must
fail with a message naming it, not load half a model or start fresh silently.
"""

from __future__ import annotations

from recsys_committee.errors import UserError

import os
from pathlib import Path
from typing import Any

import torch


class CheckpointError(UserError, RuntimeError):
    """A checkpoint is missing, corrupt or incompatible; the message names the file."""


FORMAT = "diverse-distill/1"


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write to a temp file then rename: the old checkpoint survives a crash mid-write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format": FORMAT, **payload}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, required: tuple[str, ...] = ("state_dict",)) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated zip, pickle garbage, wrong file type
        raise CheckpointError(f"checkpoint {path} is corrupt or not a torch file: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a {FORMAT} checkpoint")
    missing = [k for k in required if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}")
    return payload


def load_state_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """load_state_dict, turning key/shape mismatches into a CheckpointError naming the file."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} does not fit the model: {exc}") from exc

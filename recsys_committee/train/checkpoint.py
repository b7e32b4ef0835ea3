"""Atomic, validated model files in safetensors: loading one never runs code.

Why safetensors: a teacher file may come from shared storage, and a torch pickle can run any
code when it is loaded. A model file is one ``.safetensors`` file: the weights (the state dict,
tensors only) plus, in the file's own metadata under ``diverse_distill``, a JSON object with the
rest of the payload (format tag, domain, model name, params, cardinalities, feature layout,
dense input names, epoch, validation metric, method). One file keeps a model directory
self-contained and makes a save one atomic rename: a crash never leaves metadata pointing at missing weights.

Why atomic and validated: a crash or a NaN must never cost the last good model, and a corrupt or
foreign file must fail with a message naming it, not load half a model or start fresh silently.

A torch pickle given as a model file is refused by name, never unpickled.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from recsys_committee.errors import UserError
from recsys_committee.files import atomic_path


class CheckpointError(UserError, RuntimeError):
    """A checkpoint is missing, corrupt or incompatible; the message names the file."""


FORMAT = "diverse-distill/2"  # /1 was the torch-pickle file (model.pt)
META_KEY = "diverse_distill"  # the safetensors metadata entry holding the JSON payload
SUFFIX = ".safetensors"
PICKLE_MAGIC = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")  # torch.save's zip; a bare pickle


def _looks_like_pickle(path: Path) -> bool:
    """Only asked once safetensors refused the file (a safetensors header may start like these)."""
    with open(path, "rb") as fh:
        return fh.read(4).startswith(PICKLE_MAGIC)


def _tensors_for_file(state: dict[str, Any], path: Path) -> dict[str, torch.Tensor]:
    """Plain contiguous CPU tensors, none sharing memory: safetensors refuses shared storage
    (tied weights), so every tensor after the first on one storage is cloned (loading strictly
    into the model ties them again)."""
    tensors, seen = {}, set()
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"checkpoint {path}: state_dict entry '{key}' is a {type(value).__name__}, not a tensor")
        tensor = value.detach().to("cpu")
        storage = tensor.untyped_storage().data_ptr() if tensor.numel() else None
        if storage in seen or not tensor.is_contiguous():
            tensor = tensor.contiguous().clone()
        elif storage is not None:
            seen.add(storage)
        tensors[key] = tensor
    return tensors


def _finite_json(value: Any) -> Any:
    """JSON has no NaN/inf: they are written as strings and read back by ``_from_json``."""
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": repr(value)}
    if isinstance(value, dict):
        return {k: _finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_json(v) for v in value]
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__float__"}:
            return float(value["__float__"])
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (``state_dict`` + JSON-able entries) to a temp file, then rename: the
    old file survives a crash mid-write."""
    from safetensors.torch import save_file

    path = Path(path)
    if "state_dict" not in payload:
        raise ValueError(f"checkpoint {path}: the payload needs a 'state_dict'")
    rest = {k: v for k, v in payload.items() if k != "state_dict"}
    try:
        meta = json.dumps(_finite_json({"format": FORMAT, **rest}), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint {path}: the payload besides state_dict must be JSON (str, numbers, lists, dicts): {exc}") from exc
    tensors = _tensors_for_file(payload["state_dict"], path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: meta})


def load_checkpoint(path: str | Path, required: tuple[str, ...] = ("state_dict",)) -> dict[str, Any]:
    """The payload ``save_checkpoint`` wrote (``state_dict`` and the JSON entries), read with
    safetensors: no pickle, no code. Missing, corrupt, foreign or old-format files raise a
    ``CheckpointError`` naming the file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        hint = ""
        if path.suffix == ".pt" and path.with_suffix(SUFFIX).is_file():
            hint = f" (model files are now {SUFFIX}: {path.with_suffix(SUFFIX)} exists)"
        raise CheckpointError(f"checkpoint not found: {path}{hint}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = (f.metadata() or {}).get(META_KEY)
            state = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as exc:  # truncated file, bad header, another file type
        if _looks_like_pickle(path):
            raise CheckpointError(
                f"checkpoint {path} is a torch pickle; it is not loaded because a pickle can run code (model files are {SUFFIX})"
            ) from exc
        raise CheckpointError(f"checkpoint {path} is corrupt or not a safetensors file: {exc}") from exc
    try:
        payload = _from_json(json.loads(meta)) if meta is not None else None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt: its '{META_KEY}' metadata is not JSON: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else None
        raise CheckpointError(f"checkpoint {path} is not a {FORMAT} checkpoint" + (f" (format {found!r})" if found else ""))
    payload["state_dict"] = state
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

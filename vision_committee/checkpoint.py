"""Vision model files: what ``train``/``distill`` write and what teachers and users load back.

Why its own payload: a vision model is rebuilt from the registry name and its builder's
parameters, then its weights loaded strictly; nothing else (no committee code) is needed to
serve an exported student.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from recsys_committee.train.checkpoint import CheckpointError, load_checkpoint, load_state_strict
from vision_committee.models import build_vision_model

DOMAIN = "vision"


def vision_payload(name: str, params: dict[str, Any], state: dict, epoch: int, val: dict[str, Any], method: str | None = None) -> dict[str, Any]:
    return {
        "domain": DOMAIN,
        "model": name,
        "params": dict(params),
        "state_dict": state,
        "epoch": epoch,
        "val_top1": val.get("top1"),
        "method": method,
    }


def load_vision_model(path: str | Path) -> nn.Module:
    """Rebuild and load a model written by ``train`` or ``distill`` (eval mode)."""
    payload = load_checkpoint(path, required=("model", "params", "state_dict"))
    if payload.get("domain") != DOMAIN:
        raise CheckpointError(f"checkpoint {path} is not a vision model (domain {payload.get('domain')!r}); recommendation models load with recsys_committee")
    params = dict(payload["params"])
    if payload["model"] == "mobilenet_v2":
        params["pretrained"] = False  # the trained weights are in the checkpoint; ImageNet's are not needed
    model = build_vision_model(payload["model"], **params)
    load_state_strict(model, payload["state_dict"], path)
    model.eval()
    return model

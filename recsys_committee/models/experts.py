"""Domain experts: the student's family (TorchRec embeddings + interaction + MLP), larger, and
seeing more.

Why they beat the student (docs/METHOD.md): not size alone, which does not help on this data, but
what they see and how they model it:
  * both read 50 past items instead of 20, split by whether the user liked them, plus
    past-only statistics of the user and the item (count, mean rating, like rate);
  * ``expert_dlrm`` models pairwise feature interactions (DLRM dot products);
  * ``expert_din_dcn`` attends over the rated history with the candidate as query (DIN-style,
    each past item tagged with its rating) and stacks DCN-v2 cross layers.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn
from torchrec.modules.crossnet import LowRankCrossNet
from torchrec.modules.mlp import MLP

from recsys_committee.committee.types import StudentOutput
from recsys_committee.errors import ConfigError
from recsys_committee.data.model_input.batching import RecBatch
from recsys_committee.models.embeddings import make_ec
from recsys_committee.data.model_input.layout import FeatureLayout
from recsys_committee.models.registry import padded, register_model, resolve_layout
from recsys_committee.models.student import PooledEmbeddings


def expert_features(layout: FeatureLayout, who: str) -> list[str]:
    """The student's features plus the longer, liked and disliked histories the data has; what
    the data lacks is dropped with one warning (and listed in metrics.json by the run)."""
    if layout.dropped:
        warnings.warn(f"{who}: the data has no {sorted(f for v in layout.dropped.values() for f in v)}; the expert runs without them", stacklevel=3)
    return layout.student + [f for f in layout.expert_extra if f not in layout.student]


class DLRMExpert(nn.Module):
    def __init__(self, cardinalities: dict[str, int], num_dense: int, layout: FeatureLayout, embedding_dim: int, bottom: list[int], top: list[int], dropout: float,
                 user_dropout: float = 0.0):
        super().__init__()
        features = expert_features(layout, "expert_dlrm")
        self.embeddings = PooledEmbeddings(features, cardinalities, embedding_dim, layout, user_dropout)
        self.bottom = MLP(max(num_dense, 1), list(bottom) + [embedding_dim])
        n_vectors = len(features) + 1
        self.register_buffer("_pairs", torch.triu_indices(n_vectors, n_vectors, offset=1), persistent=False)
        self.top = MLP(embedding_dim + self._pairs.shape[1], list(top))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(top[-1], 1)

    def forward(self, batch: RecBatch) -> StudentOutput:
        sparse = self.embeddings(batch)  # [B, F, D]
        dense = self.bottom(batch.dense if batch.dense.shape[1] else batch.dense.new_zeros(batch.dense.shape[0], 1))  # [B, D]
        vectors = torch.cat([dense[:, None], sparse], dim=1)
        dots = torch.bmm(vectors, vectors.transpose(1, 2))[:, self._pairs[0], self._pairs[1]]
        h = self.top(torch.cat([dense, dots], dim=1))
        return StudentOutput(logits=self.head(self.dropout(h)).squeeze(-1), hidden=h, h0=sparse.flatten(1))


class TargetAttention(nn.Module):
    """DIN: score each past item against the candidate with a small MLP, softmax over the real ones."""

    def __init__(self, dim: int, hidden: int = 64):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(4 * dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q = query[:, None].expand_as(keys)
        logits = self.score(torch.cat([q, keys, q * keys, q - keys], dim=-1)).squeeze(-1)
        logits = logits.masked_fill(~mask, float("-inf"))
        weights = torch.nan_to_num(torch.softmax(logits, dim=-1))  # an empty history attends to nothing
        return torch.bmm(weights[:, None], keys).squeeze(1)


class DINDCNExpert(nn.Module):
    def __init__(
        self, cardinalities: dict[str, int], num_dense: int, layout: FeatureLayout, embedding_dim: int, max_history: int, cross_layers: int,
        cross_rank: int, hidden: list[int], dropout: float, user_dropout: float = 0.0
    ):
        super().__init__()
        if len(layout.sequence) < 2:
            raise ConfigError("expert_din_dcn attends over the user's history: the data spec needs features.derived.history_long (and columns.time)")
        self.max_history = max_history
        features = expert_features(layout, "expert_din_dcn")
        self.embeddings = PooledEmbeddings(features, cardinalities, embedding_dim, layout, user_dropout)
        self.sequence_features = list(layout.sequence)  # [candidate item, item history(, its ratings)]
        self.sequence = make_ec(self.sequence_features, cardinalities, embedding_dim, layout)
        self.attention = TargetAttention(embedding_dim)
        in_dim = (len(features) + 1) * embedding_dim + num_dense
        self.cross = LowRankCrossNet(in_dim, cross_layers, cross_rank)
        self.mlp = MLP(in_dim, list(hidden))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden[-1], 1)

    def forward(self, batch: RecBatch) -> StudentOutput:
        pooled = self.embeddings(batch)
        item, history, *rating = self.sequence_features
        seq = self.sequence(batch.kjt(self.sequence_features))
        candidate = seq[item].values()  # one id per row
        hist, mask = padded(seq[history].values(), seq[history].lengths(), self.max_history)
        if rating:  # each past item tagged with the user's rating of it
            rated, _ = padded(seq[rating[0]].values(), seq[rating[0]].lengths(), self.max_history)
            hist = hist + rated
        interest = self.attention(candidate, hist, mask)
        x = torch.cat([pooled.flatten(1), interest, batch.dense], dim=1)
        h = self.mlp(self.cross(x))
        return StudentOutput(logits=self.head(self.dropout(h)).squeeze(-1), hidden=h, h0=pooled.flatten(1))


@register_model("expert_dlrm")
def expert_dlrm(
    cardinalities: dict[str, int],
    num_dense: int,
    *,
    data: Any = None,
    layout: dict[str, Any] | None = None,
    embedding_dim: int = 64,
    bottom: list[int] = (128,),
    top: list[int] = (1024, 1024, 256),
    dropout: float = 0.0,
    user_dropout: float = 0.0,
) -> DLRMExpert:
    return DLRMExpert(cardinalities, num_dense, resolve_layout(data, layout), embedding_dim, list(bottom), list(top), dropout, user_dropout)


@register_model("expert_din_dcn")
def expert_din_dcn(
    cardinalities: dict[str, int],
    num_dense: int,
    *,
    data: Any = None,
    layout: dict[str, Any] | None = None,
    embedding_dim: int = 64,
    max_history: int = 50,
    cross_layers: int = 3,
    cross_rank: int = 128,
    hidden: list[int] = (1024, 512, 256),
    dropout: float = 0.0,
    user_dropout: float = 0.0,
) -> DINDCNExpert:
    return DINDCNExpert(cardinalities, num_dense, resolve_layout(data, layout), embedding_dim, max_history, cross_layers, cross_rank, list(hidden), dropout,
                        user_dropout)

"""Domain experts: the student's family (TorchRec embeddings + interaction + MLP), larger, and
seeing more.

Why they beat the student (METHOD.md): not size alone, which does not help on this data, but
what they see and how they model it:
  * both read 50 past items instead of 20, split by whether the user liked them, plus
    past-only statistics of the user and the item (count, mean rating, like rate);
  * ``expert_dlrm`` models pairwise feature interactions (DLRM dot products);
  * ``expert_din_dcn`` attends over the rated history with the candidate as query (DIN-style,
    each past item tagged with its rating) and stacks DCN-v2 cross layers.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchrec.modules.crossnet import LowRankCrossNet
from torchrec.modules.mlp import MLP

from recsys_committee.committee.types import StudentOutput
from recsys_committee.data.batching import RecBatch
from recsys_committee.models.embeddings import make_ec
from recsys_committee.models.registry import padded, register_model
from recsys_committee.models.student import STUDENT_FEATURES, PooledEmbeddings

EXPERT_FEATURES = STUDENT_FEATURES + ["history_long", "history_liked", "history_disliked"]


class DLRMExpert(nn.Module):
    def __init__(self, cardinalities: dict[str, int], num_dense: int, embedding_dim: int, bottom: list[int], top: list[int], dropout: float):
        super().__init__()
        self.embeddings = PooledEmbeddings(EXPERT_FEATURES, cardinalities, embedding_dim)
        self.bottom = MLP(num_dense, list(bottom) + [embedding_dim])
        n_vectors = len(EXPERT_FEATURES) + 1
        self.register_buffer("_pairs", torch.triu_indices(n_vectors, n_vectors, offset=1), persistent=False)
        self.top = MLP(embedding_dim + self._pairs.shape[1], list(top))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(top[-1], 1)

    def forward(self, batch: RecBatch) -> StudentOutput:
        sparse = self.embeddings(batch)  # [B, F, D]
        dense = self.bottom(batch.dense)  # [B, D]
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
        self, cardinalities: dict[str, int], num_dense: int, embedding_dim: int, max_history: int, cross_layers: int, cross_rank: int, hidden: list[int], dropout: float
    ):
        super().__init__()
        self.max_history = max_history
        self.embeddings = PooledEmbeddings(EXPERT_FEATURES, cardinalities, embedding_dim)
        self.sequence = make_ec(["item_id", "history_long", "history_long_rating"], cardinalities, embedding_dim)
        self.attention = TargetAttention(embedding_dim)
        in_dim = (len(EXPERT_FEATURES) + 1) * embedding_dim + num_dense
        self.cross = LowRankCrossNet(in_dim, cross_layers, cross_rank)
        self.mlp = MLP(in_dim, list(hidden))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden[-1], 1)

    def forward(self, batch: RecBatch) -> StudentOutput:
        pooled = self.embeddings(batch)
        seq = self.sequence(batch.kjt(["item_id", "history_long", "history_long_rating"]))
        candidate = seq["item_id"].values()  # one id per row
        hist, mask = padded(seq["history_long"].values(), seq["history_long"].lengths(), self.max_history)
        rated, _ = padded(seq["history_long_rating"].values(), seq["history_long_rating"].lengths(), self.max_history)
        interest = self.attention(candidate, hist + rated, mask)
        x = torch.cat([pooled.flatten(1), interest, batch.dense], dim=1)
        h = self.mlp(self.cross(x))
        return StudentOutput(logits=self.head(self.dropout(h)).squeeze(-1), hidden=h, h0=pooled.flatten(1))


@register_model("expert_dlrm")
def expert_dlrm(
    cardinalities: dict[str, int],
    num_dense: int,
    *,
    data: Any = None,
    embedding_dim: int = 64,
    bottom: list[int] = (128,),
    top: list[int] = (1024, 1024, 256),
    dropout: float = 0.0,
) -> DLRMExpert:
    return DLRMExpert(cardinalities, num_dense, embedding_dim, list(bottom), list(top), dropout)


@register_model("expert_din_dcn")
def expert_din_dcn(
    cardinalities: dict[str, int],
    num_dense: int,
    *,
    data: Any = None,
    embedding_dim: int = 64,
    max_history: int = 50,
    cross_layers: int = 3,
    cross_rank: int = 128,
    hidden: list[int] = (1024, 512, 256),
    dropout: float = 0.0,
) -> DINDCNExpert:
    return DINDCNExpert(cardinalities, num_dense, embedding_dim, max_history, cross_layers, cross_rank, list(hidden), dropout)

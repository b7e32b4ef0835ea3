"""The student: embeddings -> one DCN-v2 cross layer -> MLP -> h -> logit.

Why this shape: it is the deployable model (small, cheap, one forward). It exposes ``h`` (the
representation right before its head) and ``h0`` (the pooled embeddings it computes anyway),
which the committee's QA module and gate read (METHOD.md); after distillation it is exported
alone, with no extra inference cost.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchrec.modules.crossnet import LowRankCrossNet
from torchrec.modules.mlp import MLP

from recsys_committee.committee.types import StudentOutput
from recsys_committee.data.batching import RecBatch
from recsys_committee.models.embeddings import make_ebc
from recsys_committee.models.registry import register_model, resolve_layout
from recsys_committee.data.layout import FeatureLayout

class PooledEmbeddings(nn.Module):
    """EBC over a fixed feature list -> [B, F, D], features in the order given (never the
    order the EBC returns its keys in: a sharded EBC may reorder them)."""

    def __init__(self, features: list[str], cardinalities: dict[str, int], dim: int, layout: FeatureLayout):
        super().__init__()
        self.features = list(features)
        self.ebc = make_ebc(self.features, cardinalities, dim, layout)

    def forward(self, batch: RecBatch) -> torch.Tensor:
        pooled = self.ebc(batch.kjt(self.features)).to_dict()
        return torch.stack([pooled[f] for f in self.features], dim=1)


class RecStudent(nn.Module):
    def __init__(
        self,
        cardinalities: dict[str, int],
        features: list[str],
        layout: FeatureLayout,
        embedding_dim: int,
        cross_layers: int,
        cross_rank: int,
        hidden: list[int],
        dropout: float,
    ):
        super().__init__()
        self.embeddings = PooledEmbeddings(features, cardinalities, embedding_dim, layout)
        in_dim = len(features) * embedding_dim
        self.cross = LowRankCrossNet(in_dim, cross_layers, cross_rank) if cross_layers else nn.Identity()
        self.mlp = MLP(in_dim, list(hidden))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden[-1], 1)
        self.hidden_dim = hidden[-1]

    def forward(self, batch: RecBatch) -> StudentOutput:
        h0 = self.embeddings(batch).flatten(1)
        h = self.mlp(self.cross(h0))
        logits = self.head(self.dropout(h)).squeeze(-1)
        return StudentOutput(logits=logits, hidden=h, h0=h0)


@register_model("student")
def student(
    cardinalities: dict[str, int],
    num_dense: int,
    *,
    data: Any = None,
    layout: dict[str, Any] | None = None,
    features: list[str] | None = None,
    embedding_dim: int = 32,
    cross_layers: int = 1,
    cross_rank: int = 64,
    hidden: list[int] = (512, 256),
    dropout: float = 0.0,
) -> RecStudent:
    """Reads the data's student features (user, item, the short history, the categorical and
    list columns of the spec; ``features`` overrides the list)."""
    resolved = resolve_layout(data, layout)
    return RecStudent(cardinalities, list(features or resolved.student), resolved, embedding_dim, cross_layers, cross_rank, list(hidden), dropout)

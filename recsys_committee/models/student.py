"""The student: pooled embeddings + a bottom MLP over the dense vector -> one DCN-v2 cross
layer -> MLP -> h -> logit.

Why this shape: it is the deployable model (small, cheap, one forward). It exposes ``h`` (the
representation right before its head) and ``h0`` (the pooled embeddings and the dense vector's
embedding it computes anyway), which the committee's QA module and gate read (docs/METHOD.md); after
distillation it is exported alone, with no extra inference cost.

Why it reads every cheap input the data declares (``inputs: all``): distillation transfers how
a teacher uses an input; it cannot transfer an input the student never sees. The experts win
with the past-only user and item statistics (the dense vector) and the long, liked, disliked
and rated histories. All of those are cheap at serving time: the histories are bags over the
item table the student already owns (no new table), the rated history a bag over a table of a
handful of rating values, the dense vector a small DLRM-style bottom MLP.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchrec.modules.crossnet import LowRankCrossNet
from torchrec.modules.mlp import MLP

from recsys_committee.committee.types import StudentOutput
from recsys_committee.errors import ConfigError
from recsys_committee.data.model_input.batching import RecBatch
from recsys_committee.models.embeddings import INIT_STD, make_ebc
from recsys_committee.models.registry import register_model, resolve_layout
from recsys_committee.data.model_input.layout import FeatureLayout

USER_FEATURE = "user_id"  # featurize's name for the spec's user column, whatever the logs call it


class PooledEmbeddings(nn.Module):
    """EBC over a fixed feature list -> [B, F, D], features in the order given (never the
    order the EBC returns its keys in: a sharded EBC may reorder them).

    ``user_dropout`` (training only): each row's user-id embedding, with that probability, is
    replaced by a fresh draw at the scale of an untrained row. Why: in a temporal split most
    evaluated rows come from users the model never trained on (MovieLens-100K: 85% of validation
    and 86% of test rows), whose id rows are still at their random start. A model that leans on
    the id embeddings of the users it trained on scores those users worse than their history and
    statistics allow (and a student distilled through those embeddings learns nothing it can use
    on a new user); trained on rows whose id looks untrained, it learns to score from what a new
    user has. Evaluation and export never drop. Here, not in each model: every recommendation
    model reads its pooled features through this module."""

    def __init__(self, features: list[str], cardinalities: dict[str, int], dim: int, layout: FeatureLayout, user_dropout: float = 0.0):
        super().__init__()
        if not 0.0 <= user_dropout <= 1.0:
            raise ConfigError(f"user_dropout must be in [0, 1], got {user_dropout}")
        self.features = list(features)
        self.ebc = make_ebc(self.features, cardinalities, dim, layout)
        self.user_dropout = float(user_dropout)
        self.user_index = self.features.index(USER_FEATURE) if USER_FEATURE in self.features else None

    def forward(self, batch: RecBatch) -> torch.Tensor:
        pooled = self.ebc(batch.kjt(self.features)).to_dict()
        stacked = torch.stack([pooled[f] for f in self.features], dim=1)
        if not self.training or self.user_dropout == 0.0 or self.user_index is None:
            return stacked
        i = self.user_index
        drop = torch.rand(stacked.shape[0], 1, device=stacked.device) < self.user_dropout
        out = stacked.clone()
        out[:, i] = torch.where(drop, torch.randn_like(stacked[:, i]) * INIT_STD, stacked[:, i])
        return out


STUDENT_INPUTS = ("basic", "all")


def student_features(layout: FeatureLayout, inputs: str) -> list[str]:
    """``basic``: ids, the short history, categorical and list columns (the layout's ``student``
    list); ``all``: also the long / liked / disliked histories and the long history's ratings,
    whichever the data has."""
    if inputs not in STUDENT_INPUTS:
        raise ConfigError(f"student inputs must be one of {STUDENT_INPUTS}, got {inputs!r}")
    features = list(layout.student)
    if inputs == "all":
        extra = list(layout.expert_extra) + [f for f in layout.sequence[2:]]  # sequence = [item, history_long(, its ratings)]
        features += [f for f in extra if f not in features]
    return features


class DenseBottom(nn.Module):
    """DLRM's bottom MLP: the standardised dense vector -> one more embedding-sized vector.
    With no dense column it returns a [B, 0] tensor, so the student's code has one path."""

    def __init__(self, num_dense: int, hidden: list[int], out_dim: int):
        super().__init__()
        self.num_dense = num_dense
        self.out_dim = out_dim if num_dense else 0
        self.mlp = MLP(num_dense, list(hidden) + [out_dim]) if num_dense else nn.Identity()

    def forward(self, dense: torch.Tensor) -> torch.Tensor:
        if self.out_dim == 0:
            return dense[:, :0]
        return self.mlp(dense)


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
        num_dense: int = 0,
        dense_hidden: list[int] = (),
        user_dropout: float = 0.0,
    ):
        super().__init__()
        self.embeddings = PooledEmbeddings(features, cardinalities, embedding_dim, layout, user_dropout)
        self.bottom = DenseBottom(num_dense, list(dense_hidden), embedding_dim)
        in_dim = len(features) * embedding_dim + self.bottom.out_dim
        self.cross = LowRankCrossNet(in_dim, cross_layers, cross_rank) if cross_layers else nn.Identity()
        self.mlp = MLP(in_dim, list(hidden))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden[-1], 1)
        self.hidden_dim = hidden[-1]

    def forward(self, batch: RecBatch) -> StudentOutput:
        h0 = torch.cat([self.embeddings(batch).flatten(1), self.bottom(batch.dense)], dim=1)
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
    inputs: str = "basic",
    dense_hidden: list[int] = (),
    user_dropout: float = 0.0,
) -> RecStudent:
    """Reads the data's student features (``inputs: basic``: user, item, the short history, the
    categorical and list columns of the spec; ``all``: also every longer history and the dense
    vector through a bottom MLP of widths ``dense_hidden``; ``features`` overrides the list).
    ``user_dropout``: the share of training rows whose user-id embedding looks untrained
    (``PooledEmbeddings``).
    ``basic`` is the default so that model files written before ``inputs`` existed rebuild as
    they were trained; the shipped configs ask for ``all``."""
    resolved = resolve_layout(data, layout)
    chosen = list(features or student_features(resolved, inputs))
    reads_dense = num_dense if inputs == "all" else 0
    return RecStudent(cardinalities, chosen, resolved, embedding_dim, cross_layers, cross_rank, list(hidden), dropout,
                      num_dense=reads_dense, dense_hidden=list(dense_hidden), user_dropout=user_dropout)

"""Tiny pure-torch students, teachers and batches for the committee-core tests.

Why a module and not only conftest fixtures: several tests build their own variants (a teacher
that cannot reenter, a NaN teacher), so the classes are importable; conftest.py wraps the
common ones as fixtures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from recsys_committee.committee import StudentOutput, TeacherAdapter, append_token, normalize_features, tap_outputs


@dataclass
class ToyBatch:
    x: torch.Tensor  # [B, d_in]
    labels: torch.Tensor  # [B] float (binary) or long (multiclass)
    example_ids: torch.Tensor  # [B] rows of the whole data set (for PrecomputedTeacher)

    def subset(self, index: torch.Tensor) -> "ToyBatch":
        return ToyBatch(self.x[index], self.labels[index], self.example_ids[index])

    def __len__(self) -> int:
        return int(self.labels.shape[0])


class ToyStudent(nn.Module):
    """x -> MLP -> h -> head; h0 = the first layer's activations (computed anyway)."""

    def __init__(self, d_in: int, hidden: int = 16, n_classes: int = 0) -> None:
        super().__init__()
        self.inp = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU())
        self.body = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, n_classes or 1)
        self.binary = n_classes == 0

    def forward(self, batch: ToyBatch) -> StudentOutput:
        h0 = self.inp(batch.x)
        h = self.body(h0)
        logits = self.head(h)
        return StudentOutput(logits=logits.squeeze(-1) if self.binary else logits, hidden=h, h0=h0)


class MLPTeacher(TeacherAdapter):
    """An MLP with BatchNorm (so a teacher left in train mode would visibly change)."""

    def __init__(self, d_in: int, name: str = "mlp", hidden: int = 24, n_classes: int = 0, always_on: bool = False, model: Optional[nn.Module] = None) -> None:
        model = model or nn.Sequential(nn.Linear(d_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(0.2), nn.Linear(hidden, n_classes or 1))
        super().__init__(model, name=name, tap="2", always_on=always_on)
        self.binary = n_classes == 0

    def forward_model(self, batch: ToyBatch) -> torch.Tensor:
        out = self.model(batch.x)
        return out.squeeze(-1) if self.binary else out


class ToyTransformer(nn.Module):
    def __init__(self, d_in: int, n_tokens: int = 4, d_model: int = 16, n_classes: int = 0) -> None:
        super().__init__()
        self.n_tokens, self.d_model = n_tokens, d_model
        self.embed = nn.Linear(d_in, n_tokens * d_model)
        layer = nn.TransformerEncoderLayer(d_model, nhead=2, dim_feedforward=32, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, n_classes or 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x).view(x.shape[0], self.n_tokens, self.d_model)
        return self.head(self.encoder(tokens).mean(dim=1))


class TransformerTeacher(TeacherAdapter):
    """Token features at the first encoder layer; supports ``reenter`` through hooks only."""

    def __init__(self, d_in: int, name: str = "tfm", n_classes: int = 0, always_on: bool = False, with_head: bool = True) -> None:
        super().__init__(ToyTransformer(d_in, n_classes=n_classes), name=name, tap="encoder.layers.0", always_on=always_on)
        self.binary = n_classes == 0
        self.with_head = with_head

    def forward_model(self, batch: ToyBatch) -> Optional[torch.Tensor]:
        out = self.model(batch.x)
        if not self.with_head:
            return None
        return out.squeeze(-1) if self.binary else out

    @property
    def supports_reenter(self) -> bool:
        return True

    def reenter(self, batch: ToyBatch, question: torch.Tensor) -> torch.Tensor:
        with append_token(self.model, self.tap, question), tap_outputs(self.model, ["encoder.layers.-1"]) as taps:
            self.model(batch.x)
        return normalize_features(taps["encoder.layers.-1"])[:, -1]


def make_batch(n: int = 12, d_in: int = 6, n_classes: int = 0, seed: int = 0) -> ToyBatch:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=g)
    if n_classes:
        labels = torch.randint(0, n_classes, (n,), generator=g)
    else:
        labels = (torch.rand(n, generator=g) < 0.5).float()
    return ToyBatch(x=x, labels=labels, example_ids=torch.arange(n))

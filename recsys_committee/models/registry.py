"""Model registry: ``@register_model("name")`` on a builder ``(cardinalities, num_dense, **params)``.

Why: a YAML file names the model and its parameters; the builder's signature is the schema,
so an unknown parameter is refused with the accepted names (``Registry.build``).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from recsys_committee.registry import Registry

MODELS: Registry[Any] = Registry("model")
register_model = MODELS.register


def build_model(name: str, cardinalities: dict[str, int], num_dense: int, *, data: Any = None, **params: Any) -> nn.Module:
    """``data`` (a RecData) goes to builders that take it (the LM teacher renders its texts from it)."""
    if data is not None and "data" in inspect.signature(MODELS.get(name)).parameters:
        params["data"] = data
    return MODELS.build(name, cardinalities, num_dense, **params)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def embedding_parameters(module: nn.Module) -> list[nn.Parameter]:
    """Parameters of TorchRec embedding modules (they get the fused / row-wise optimiser)."""
    from torchrec import EmbeddingBagCollection, EmbeddingCollection

    params: list[nn.Parameter] = []
    for sub in module.modules():
        if isinstance(sub, (EmbeddingBagCollection, EmbeddingCollection)):
            params.extend(sub.parameters())
    return params


def dense_parameters(module: nn.Module) -> list[nn.Parameter]:
    emb = {id(p) for p in embedding_parameters(module)}
    return [p for p in module.parameters() if id(p) not in emb and p.requires_grad]


def padded(values: torch.Tensor, lengths: torch.Tensor, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Jagged [total, D] -> padded [B, max_len, D] and mask [B, max_len] (True = real)."""
    batch = lengths.numel()
    out = values.new_zeros(batch, max_len, values.shape[-1])
    mask = torch.zeros(batch, max_len, dtype=torch.bool, device=values.device)
    if values.shape[0]:
        segment = torch.repeat_interleave(torch.arange(batch, device=values.device), lengths)
        offsets = torch.cumsum(lengths, 0) - lengths
        position = torch.arange(values.shape[0], device=values.device) - offsets[segment]
        out[segment, position] = values
        mask[segment, position] = True
    return out, mask

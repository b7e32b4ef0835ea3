"""Model registry: ``@register_model("name")`` on a builder ``(cardinalities, num_dense, **params)``.

Why: a YAML file names the model and its parameters; the builder's signature is the schema,
so an unknown parameter is refused with the accepted names (``Registry.build``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from recsys_committee.committee.export import count_params  # noqa: F401  (re-exported: models are counted here too)
from recsys_committee.data.model_input.layout import FeatureLayout
from recsys_committee.registry import Registry

MODELS: Registry[Any] = Registry("model")
register_model = MODELS.register


def build_model(name: str, cardinalities: dict[str, int], num_dense: int, *, data: Any = None, layout: Any = None, **params: Any) -> nn.Module:
    """Every builder takes ``data`` (the run's RecData, or None when a model file is rebuilt on
    its own) and ``layout`` (the feature layout a model file stored): models read their feature
    lists from them; the LM teacher renders its texts from the data."""
    return MODELS.build(name, cardinalities, num_dense, data=data, layout=layout, **params)


def resolve_layout(data: Any, layout: Any) -> FeatureLayout:
    """The layout stored in a model file, else the data's (models never name a column)."""
    if layout is not None:
        return layout if isinstance(layout, FeatureLayout) else FeatureLayout.from_dict(layout)
    table = getattr(data, "table", data)
    if getattr(table, "layout", None) is None or not table.layout.student:
        raise ValueError("a recommendation model needs the data's feature layout (build it with data=..., or load its model file)")
    return table.layout


def embedding_parameters(module: nn.Module) -> list[nn.Parameter]:
    """Parameters of TorchRec embedding modules (they get the fused / row-wise optimiser)."""
    from torchrec import EmbeddingBagCollection, EmbeddingCollection

    params: list[nn.Parameter] = []
    for sub in module.modules():
        if isinstance(sub, (EmbeddingBagCollection, EmbeddingCollection)):
            params.extend(sub.parameters())
    return params


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

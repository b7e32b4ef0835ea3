"""What ``reenter`` needs besides the appended token: which layer the question enters after, and
attention masks one token wider for the layers above it.

Why its own module: the question token is appended by a forward hook
(``committee.taps.append_token``), but the upper BertLayers still receive the attention mask
for the original length. These pre-hooks widen it for just those layers, so nothing in the
model is edited. They depend on how transformers passes the mask ([B, L] or [B, h, Q, K],
positional or keyword), so they are kept in one small place.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Iterator, Sequence

import torch
from torch import nn

_LAYER_TAP = re.compile(r"^encoder\.layer\.(-?\d+)$")


def _grow_mask(mask: Any) -> Any:
    """An attention mask for one more token at the end: the new key is visible to every query,
    the new query sees what the first (real, [CLS]) query sees plus itself."""
    if not isinstance(mask, torch.Tensor):
        return mask  # None: no padding anywhere, nothing to widen
    keep = True if mask.dtype == torch.bool else 0.0
    if mask.dim() == 2:  # [B, L] 0/1 key mask
        return torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
    grown = torch.cat([mask, torch.full_like(mask[..., :1], keep)], dim=-1)  # new key column
    if grown.shape[-2] > 1:  # [B, h, Q, K]: a query row for the new token
        grown = torch.cat([grown, grown[..., :1, :]], dim=-2)
    return grown


@contextlib.contextmanager
def _wider_masks(layers: Sequence[nn.Module]) -> Iterator[None]:
    """Forward pre-hooks that widen the attention mask the layers receive by one token."""

    def hook(_module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if "attention_mask" in kwargs:
            kwargs = {**kwargs, "attention_mask": _grow_mask(kwargs["attention_mask"])}
        elif len(args) > 1:
            args = (args[0], _grow_mask(args[1]), *args[2:])
        return args, kwargs

    handles = [layer.register_forward_pre_hook(hook, with_kwargs=True) for layer in layers]
    try:
        yield
    finally:
        for h in handles:
            h.remove()

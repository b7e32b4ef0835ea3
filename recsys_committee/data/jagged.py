"""Vectorised jagged (ragged) array helpers: no Python loop over rows.

Why: histories and genres are variable-length; building them per row in Python is the slow
path that makes 100k rows take minutes and 10M rows impossible. Everything here is index
arithmetic on flat arrays (values + offsets), the layout KeyedJaggedTensor uses.
"""

from __future__ import annotations

import torch


def offsets_from_lengths(lengths: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(lengths.numel() + 1, dtype=torch.long)
    torch.cumsum(lengths, 0, out=out[1:])
    return out


def gather_ranges(values: torch.Tensor, starts: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Concatenate ``values[s:s+l]`` for every (s, l) pair, in order."""
    total = int(lengths.sum())
    if total == 0:
        return values[:0]
    segment = torch.repeat_interleave(torch.arange(lengths.numel()), lengths)
    seg_offsets = offsets_from_lengths(lengths)[:-1]
    position = torch.arange(total) - seg_offsets[segment] + starts[segment]
    return values[position]


def gather_jagged(values: torch.Tensor, offsets: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``index`` of a jagged column -> (values, lengths)."""
    starts = offsets[index]
    lengths = offsets[index + 1] - starts
    return gather_ranges(values, starts, lengths), lengths


def filter_jagged(values: torch.Tensor, lengths: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the values where ``keep`` is False, keeping row boundaries."""
    segment = torch.repeat_interleave(torch.arange(lengths.numel()), lengths)
    new_lengths = torch.zeros_like(lengths).index_add_(0, segment[keep], torch.ones_like(segment[keep]))
    return values[keep], new_lengths

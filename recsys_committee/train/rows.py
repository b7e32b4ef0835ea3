"""Rows of a split, cut into batches, and a model's outputs over a whole split.

Why generic: every domain's split is "N rows and a way to build the batch of some rows"; the
order of an epoch (seeded shuffle, this rank's share, resuming mid-epoch) and gathering every
rank's predictions back into row order are the same for clicks and images, so they live here
once and the domains' splits inherit them (``RowSplit``).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Optional

import torch
from torch import nn

from recsys_committee.heap import release_free_heap
from recsys_committee.train.distributed import DistContext

RowMap = Callable[[torch.Tensor], torch.Tensor]


class RowSplit:
    """Mixin for a split: subclasses give ``__len__`` and ``batch(rows)``."""

    def __len__(self) -> int:
        raise NotImplementedError

    def batch(self, rows: torch.Tensor) -> Any:
        raise NotImplementedError

    def batches(
        self, batch_size: int, shuffle: bool = False, generator: Optional[torch.Generator] = None, rows: Optional[RowMap] = None, start: int = 0,
    ) -> Iterator[Any]:
        """Batches in (shuffled) order. ``rows`` maps the epoch's global order to this rank's
        share (``DistContext.train_rows``); ``start`` skips that many batches without building
        them (resuming mid-epoch rebuilds the same order from the same generator state)."""
        order = torch.randperm(len(self), generator=generator) if shuffle else torch.arange(len(self))
        if rows is not None:
            order = rows(order)
        for begin in range(start * batch_size, order.numel(), batch_size):
            yield self.batch(order[begin : begin + batch_size])

    def num_batches(self, batch_size: int, rows: Optional[RowMap] = None) -> int:
        n = len(self) if rows is None else int(rows(torch.arange(len(self))).numel())
        return (n + batch_size - 1) // batch_size


@torch.no_grad()
def predict_logits(model: nn.Module, split: RowSplit, batch_size: int, ctx: Optional[DistContext] = None) -> torch.Tensor:
    """The model's logits (float32, CPU) for every row of ``split``, in row order. Distributed:
    each rank predicts its interleaved share (the same number of equal batches everywhere, as
    sharded embeddings need) and the shares are gathered, so metrics see ALL predictions."""
    ctx = ctx or DistContext.single()
    was_training = model.training
    model.eval()
    if hasattr(split, "eval_batches"):  # a streamed split: each rank reads a contiguous share
        logits = []
        for b in split.eval_batches(batch_size, ctx):
            logits.append(model(b.to(ctx.device)).logits.float().cpu())
            release_free_heap()  # else the freed batches' pages stay with the process: RSS grows with the split
        model.train(was_training)
        return ctx.gather_contiguous(torch.cat(logits), len(split))
    rows, _ = ctx.eval_rows(len(split))
    logits = [model(split.batch(rows[i : i + batch_size]).to(ctx.device)).logits.float().cpu() for i in range(0, rows.numel(), batch_size)]
    model.train(was_training)
    return ctx.gather_predictions(torch.cat(logits), len(split))

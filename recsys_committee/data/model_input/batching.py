"""Columnar dataset -> batches of TorchRec KeyedJaggedTensors, built with index arithmetic.

Why a ``RecBatch`` and not a bare KJT: a committee runs several models that read different
feature subsets, and the gate routes sub-batches to teachers. The batch keeps every column once
and builds the KJT a model asks for (``batch.kjt(keys)``); ``subset`` cuts rows for routing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys_committee.data.features.table import FeatureTable
from recsys_committee.data.features.jagged import gather_jagged, offsets_from_lengths, range_positions
from recsys_committee.train.rows import RowSplit


@dataclass
class RecBatch:
    """One batch: labels, ids, dense features and jagged sparse columns (values, lengths)."""

    labels: torch.Tensor  # [B] float 0/1
    example_ids: torch.Tensor  # [B] row id in the FeatureTable (keys the teacher caches)
    users: torch.Tensor  # [B] user ids, for GAUC and warm/cold reports
    dense: torch.Tensor  # [B, n_dense] float
    sparse: dict[str, tuple[torch.Tensor, torch.Tensor]]  # name -> (values, lengths)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # per-row tensors riding along (streamed teacher caches)
    _kjt_cache: dict[tuple[str, ...], KeyedJaggedTensor] = field(default_factory=dict, repr=False)
    _layout: dict[str, object] = field(default_factory=dict, repr=False)  # per column: True (one value a row) or its offsets
    _owner: dict[str, str] = field(default_factory=dict, repr=False)  # jagged column -> the first column with its row layout

    def _single_valued(self, name: str, values: torch.Tensor, lengths: torch.Tensor) -> bool:
        if name not in self._layout:
            self._layout[name] = True if values.numel() == lengths.numel() and bool((lengths == 1).all()) else None
        return self._layout[name] is True

    def _offsets(self, name: str, lengths: torch.Tensor) -> torch.Tensor:
        if not isinstance(self._layout.get(name), torch.Tensor):
            self._layout[name] = offsets_from_lengths(lengths.cpu())
        return self._layout[name]

    def _layout_owner(self, name: str, lengths: torch.Tensor) -> str:
        """The first jagged column with exactly these row lengths (``name`` itself if none)."""
        if name not in self._owner:
            owner = name
            for other, (other_values, other_lengths) in self.sparse.items():
                if other == name:
                    break
                if (not self._single_valued(other, other_values, other_lengths) and other_lengths.shape == lengths.shape
                        and torch.equal(other_lengths, lengths)):
                    owner = other
                    break
            self._owner[name] = owner
        return self._owner[name]

    def __len__(self) -> int:
        return int(self.labels.numel())

    def kjt(self, keys: list[str] | tuple[str, ...]) -> KeyedJaggedTensor:
        keys = tuple(keys)
        if keys not in self._kjt_cache:
            missing = [k for k in keys if k not in self.sparse]
            if missing:
                raise KeyError(f"batch has no sparse feature(s) {missing}; available: {sorted(self.sparse)}")
            values = torch.cat([self.sparse[k][0] for k in keys])
            lengths = torch.cat([self.sparse[k][1] for k in keys])
            self._kjt_cache[keys] = KeyedJaggedTensor.from_lengths_sync(
                keys=list(keys), values=values, lengths=lengths
            )
        return self._kjt_cache[keys]

    def subset(self, index: torch.Tensor) -> "RecBatch":
        """The rows ``index`` (the gate's routed sub-batch). Why the two paths: single-valued
        columns (ids, buckets) are indexed directly; only true jagged columns pay for the
        range gather, and all of them in one: the distinct row layouts (a history and its
        ratings share one) are stacked once per batch and the sub-batch's value positions of
        every layout come from one ``range_positions`` call (a handful of ops instead of a dozen
        per layout: this runs once per teacher per step)."""
        sparse: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        jagged: list[tuple[str, str]] = []  # (column, its layout owner)
        for name, (values, lengths) in self.sparse.items():
            if self._single_valued(name, values, lengths):
                sparse[name] = (values.index_select(0, index), lengths.new_ones(index.numel()))
            else:
                jagged.append((name, self._layout_owner(name, lengths)))
        if jagged:
            owners = list(dict.fromkeys(owner for _, owner in jagged))
            offsets = self._stacked_offsets(owners).to(index.device)  # [layouts, B + 1]
            starts = offsets.index_select(1, index)
            lengths = offsets.index_select(1, index + 1) - starts  # [layouts, n]
            positions = range_positions(starts.reshape(-1), lengths.reshape(-1))
            per_owner = dict(zip(owners, zip(positions.split(lengths.sum(dim=1).tolist()), lengths)))
            for name, owner in jagged:
                owner_positions, owner_lengths = per_owner[owner]
                sparse[name] = (self.sparse[name][0].index_select(0, owner_positions), owner_lengths)
        sparse = {name: sparse[name] for name in self.sparse}  # the batch's column order
        return RecBatch(
            labels=self.labels.index_select(0, index),
            example_ids=self.example_ids.index_select(0, index),
            users=self.users.index_select(0, index),
            dense=self.dense.index_select(0, index),
            sparse=sparse,
            extras={k: v.index_select(0, index) for k, v in self.extras.items()},
        )

    def _stacked_offsets(self, owners: list[str]) -> torch.Tensor:
        """[len(owners), B + 1] offsets of these layouts, built once per batch."""
        key = "\0stacked:" + "\0".join(owners)
        if key not in self._layout:
            self._layout[key] = torch.stack([self._offsets(o, self.sparse[o][1]) for o in owners])
        return self._layout[key]

    def to(self, device: torch.device | str) -> "RecBatch":
        if self.labels.device == torch.device(device):
            return self  # keeps the KJT cache; no copies on the CPU path
        return RecBatch(
            labels=self.labels.to(device),
            example_ids=self.example_ids.to(device),
            users=self.users.to(device),
            dense=self.dense.to(device),
            sparse={k: (v.to(device), l.to(device)) for k, (v, l) in self.sparse.items()},
            extras={k: v.to(device) for k, v in self.extras.items()},
        )


class RecDataset(RowSplit):
    """The rows ``index`` of a FeatureTable, held as tensors and cut into RecBatches."""

    def __init__(self, table: FeatureTable, index: torch.Tensor, dense_mean: torch.Tensor, dense_std: torch.Tensor):
        frame = table.frame
        self.index = index
        take = index.numpy()
        self.labels = torch.from_numpy(frame["label"].to_numpy()[take].astype(np.float32))
        self.example_ids = torch.from_numpy(frame["example_id"].to_numpy()[take].astype(np.int64))
        self.users = torch.from_numpy(frame["user_id"].to_numpy()[take].astype(np.int64))
        if table.dense_names:
            dense = torch.from_numpy(frame.select(table.dense_names).to_numpy()[take].astype(np.float32))
            self.dense = (dense - dense_mean) / dense_std
        else:  # a spec without dense columns: [n, 0], so every model keeps one code path
            self.dense = torch.zeros(len(take), 0)
        self.scalars = {k: torch.from_numpy(frame[k].to_numpy()[take].astype(np.int64)) for k in table.layout.scalar}
        self.jagged = {}
        for name, (values, offsets) in table.jagged.items():
            v, lengths = gather_jagged(values, offsets, index)
            self.jagged[name] = (v, offsets_from_lengths(lengths))

    def __len__(self) -> int:
        return int(self.labels.numel())

    def batch(self, rows: torch.Tensor) -> RecBatch:
        sparse = {k: (col[rows], torch.ones(rows.numel(), dtype=torch.long)) for k, col in self.scalars.items()}
        for name, (values, offsets) in self.jagged.items():
            sparse[name] = gather_jagged(values, offsets, rows)
        return RecBatch(
            labels=self.labels[rows],
            example_ids=self.example_ids[rows],
            users=self.users[rows],
            dense=self.dense[rows],
            sparse=sparse,
        )

"""The run's optimisers, built explicitly: fused sparse (embedding tables) + dense (AdamW) (the
dense one's learning-rate schedule is the loop's: ``train/loop.py``).

Why two optimisers: embedding tables are updated row-wise as their gradient arrives (a fused
in-backward optimiser, TorchRec style; under DMP these become FBGEMM's fused kernels), while
everything else (MLPs, the QA module, the gate) trains with AdamW. Why here and explicit: the
runner calls ``attach_fused_sparse_optimizer`` and ``dense_optimizer`` by name and hands the
result to the loop, so what trains with what is visible where the run is assembled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

import torch
from torch import nn
from torch.distributed.optim import _apply_optimizer_in_backward

from recsys_committee.errors import ConfigError
from recsys_committee.train.config import OptimConfig

SPARSE_OPTIMIZERS = ("rowwise_adagrad", "adagrad", "sgd", "dense")


@dataclass
class Optimizers:
    """``step``/``zero_grad`` go to ``optimizer`` (under DMP a CombinedOptimizer of the fused
    tables and the dense AdamW, which is what DCP checkpoints); ``dense`` is the AdamW the
    learning-rate schedule drives; ``fused_sparse`` names the in-backward table optimiser;
    ``cfg`` is what they were built from (the loop's learning-rate schedule reads it)."""

    optimizer: torch.optim.Optimizer
    dense: torch.optim.Optimizer
    fused_sparse: Optional[str] = None
    cfg: OptimConfig = field(default_factory=OptimConfig)


def _sparse_optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    if name == "rowwise_adagrad":
        from torchrec.optim import RowWiseAdagrad  # only a domain with embedding tables gets here

        return RowWiseAdagrad
    classes = {"adagrad": torch.optim.Adagrad, "sgd": torch.optim.SGD}
    if name not in classes:
        raise ConfigError(f"optim.embedding_optimizer: unknown '{name}'; choose from {list(SPARSE_OPTIMIZERS)}")
    return classes[name]


def attach_fused_sparse_optimizer(params: list[nn.Parameter], cfg: OptimConfig) -> Optional[str]:
    """Give the embedding-table parameters an optimiser that steps inside backward (what DMP
    turns into FBGEMM's fused kernels, so call this BEFORE sharding). Returns its name, or None
    when the tables train with the dense optimiser (``embedding_optimizer: dense`` or no tables)."""
    if cfg.embedding_optimizer not in SPARSE_OPTIMIZERS:
        raise ConfigError(f"optim.embedding_optimizer: unknown '{cfg.embedding_optimizer}'; choose from {list(SPARSE_OPTIMIZERS)}")
    params = [p for p in params if p.requires_grad]
    if cfg.embedding_optimizer == "dense" or not params:
        return None
    _apply_optimizer_in_backward(_sparse_optimizer_class(cfg.embedding_optimizer), params, {"lr": cfg.embedding_lr})
    return cfg.embedding_optimizer


def dense_optimizer(params: Iterable[nn.Parameter], cfg: OptimConfig, names: Optional[dict[int, str]] = None) -> torch.optim.AdamW:
    """AdamW at ``cfg.lr`` (fused unless ``cfg.fused_adamw`` is off); with ``cfg.lr_by_module`` (and ``names``: id(param) -> name) one
    parameter group per learning rate, each parameter at the rate of its longest matching prefix."""
    params = list(params)
    fused = {"fused": True} if cfg.fused_adamw else {}  # unset, not False: torch then picks its default loop
    if not cfg.lr_by_module:
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
    if names is None:
        raise ConfigError("optim.lr_by_module is supported in single-process runs (the parameters are named there)")
    groups: dict[float, list[nn.Parameter]] = {}
    matched: set[str] = set()
    for p in params:
        name = names.get(id(p), "")
        hits = [prefix for prefix in cfg.lr_by_module if name == prefix or name.startswith(prefix + ".")]
        best = max(hits, key=len) if hits else None
        matched.update([best] if best else [])
        groups.setdefault(float(cfg.lr_by_module[best]) if best else cfg.lr, []).append(p)
    unused = sorted(set(cfg.lr_by_module) - matched)
    if unused:
        raise ConfigError(f"optim.lr_by_module: no trained parameter is under {unused} (trained: e.g. {sorted(names.values())[:3]})")
    return torch.optim.AdamW([{"params": ps, "lr": lr, "base_lr": lr} for lr, ps in groups.items()], lr=cfg.lr,
                             weight_decay=cfg.weight_decay, **fused)


def build_optimizers(trainable: list[nn.Parameter], sparse: list[nn.Parameter], cfg: OptimConfig,
                     names: Optional[dict[int, str]] = None) -> Optimizers:
    """Single process: ``sparse`` (a subset of ``trainable``) get the fused in-backward
    optimiser, the rest of ``trainable`` AdamW (all of it when the tables are dense-trained)."""
    fused = attach_fused_sparse_optimizer(sparse, cfg)
    sparse_ids = {id(p) for p in sparse} if fused else set()
    adam = dense_optimizer([p for p in trainable if id(p) not in sparse_ids], cfg, names)
    return Optimizers(optimizer=adam, dense=adam, fused_sparse=fused, cfg=cfg)


def sharded_optimizers(model: nn.Module, trainable: list[nn.Parameter], is_frozen_key: Callable[[str], bool], cfg: OptimConfig) -> Optimizers:
    """DMP's fused optimisers for the sharded tables + AdamW for the replicated ``trainable``
    parameters, both keyed by parameter name (what DCP checkpoints and reshards)."""
    from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper

    sharded = tuple(f"{path}." for path in model.plan.plan)  # a rank holds only some table shards
    ids = {id(p) for p in trainable}
    dense = {n: p for n, p in model.named_parameters() if id(p) in ids and not n.startswith(sharded)}
    made: list[torch.optim.Optimizer] = []
    adam = KeyedOptimizerWrapper(dense, lambda params: made.append(dense_optimizer(params, cfg)) or made[-1])
    # The frozen teachers' sharded tables get fused optimisers from DMP too; they never receive
    # a gradient, so leave them out: nothing to step, nothing to checkpoint.
    fused = [(name, opt) for name, opt in model.fused_optimizer.optimizers if not is_frozen_key(f"{name}.")]
    combined = CombinedOptimizer([*[(f"fused.{n}", o) for n, o in fused], ("dense", adam)])
    combined.lazy_part = adam  # AdamW creates its state at the first step: see dist_checkpoint.load_into
    return Optimizers(optimizer=combined, dense=made[-1], fused_sparse=cfg.embedding_optimizer if fused else None, cfg=cfg)

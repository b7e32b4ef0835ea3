"""The domain contract: what a domain (recommendation, vision) gives the one train/distill runner.

Why a contract: ``train`` and ``distill`` are the same procedure in every domain (seed, load
data, build the model or the committee, one loop that keeps the best validation epoch, test,
write config/metrics/model files). Only five things differ, and a domain supplies exactly those:
how to load its data, build a model, compute the plain task loss, evaluate a split, and save /
load a model file. The runner (``train/runner.py``) and everything generic import no domain, no
TorchRec and no dataset; a domain module registers itself with ``@register_domain``.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from recsys_committee.errors import UserError
from recsys_committee.registry import Registry
from recsys_committee.train.out_dir import MODEL_FILE, STUDENT_FILE


class Domain(abc.ABC):
    """One domain's pieces. ``metric`` is the validation metric the loop selects on (higher is
    better); ``model_file`` / ``student_file`` are the names ``train`` / ``distill`` write
    (safetensors: ``train/checkpoint.py``)."""

    name: str = ""
    metric: str = "auc"
    model_file: str = MODEL_FILE
    student_file: str = STUDENT_FILE

    @abc.abstractmethod
    def load_data(self, cfg: Any, transfer: bool = True) -> Any:
        """The run's data: an object with ``train``/``val``/``test`` splits whose ``train`` has
        ``num_batches(batch_size, rows=...)`` and ``batches(...)`` (see ``train/loop.py``). A
        config this domain cannot run is refused here, before anything is written.
        ``transfer=False``: the run never reads the rows without a label (a plain ``train``, a
        distillation without them), so the domain need not build them (on MovieLens-100K
        featurising 2 sampled pairs per train row costs more than the labeled rows do)."""

    @abc.abstractmethod
    def build_model(self, cfg: Any, data: Any) -> nn.Module:
        """``cfg.model`` (registry name + params) built for ``data``; returns ``StudentOutput``."""

    @abc.abstractmethod
    def task_loss(self, logits: torch.Tensor, batch: Any) -> torch.Tensor:
        """The plain training loss of a model's logits (BCE, cross-entropy)."""

    @abc.abstractmethod
    def evaluate(self, model: nn.Module, data: Any, split: str, cfg: Any, ctx: Any) -> dict[str, Any]:
        """Metrics of ``model`` over the whole ``split`` (``ctx``: gathered over ranks)."""

    @abc.abstractmethod
    def model_payload(self, cfg: Any, data: Any, state: dict, epoch: int, val: dict[str, Any], method: Optional[str]) -> dict[str, Any]:
        """What a saved model file holds besides the format tag: enough to rebuild it alone."""

    @abc.abstractmethod
    def load_model(self, path: str | Path, data: Any = None) -> nn.Module:
        """Rebuild a model file written by ``train`` or ``distill`` (eval mode)."""

    def sparse_parameters(self, module: nn.Module) -> list[nn.Parameter]:
        """Parameters updated by a fused row-wise optimiser in backward (embedding tables);
        every other trainable parameter goes to the dense optimiser. None by default."""
        return []

    def prefetch_targets(self, predictor: nn.Module) -> list[tuple[nn.Module, Callable[[Any], Any]]]:
        """(sharded module, batch -> its input) pairs whose input distribution the loop may issue
        a step early (``train/input_prefetch.py``): modules called with a function of the whole
        batch. None by default."""
        return []

    def write_data_files(self, out: Path, data: Any) -> None:
        """Files a model directory needs besides its weights to score raw rows (vocabularies,
        normalisation); written once the inputs validated. None by default."""

    def run_facts(self, data: Any) -> dict[str, Any]:
        """Extra metrics.json entries describing the data (e.g. ``train_rows``)."""
        return {}

    def with_transfer(self, data: Any) -> Any:
        """The data whose train split also holds its transfer rows (rows without a label that
        only the teachers teach on: ``committee.transfer``). The data object provides them
        (``data.with_transfer()``); a data kind without transfer rows is refused by name."""
        if not hasattr(data, "with_transfer"):
            raise UserError(f"committee.transfer: {type(data).__name__} has no transfer rows (this data path does not build them)")
        return data.with_transfer()

    def probe_batch(self, data: Any, rows: int = 256) -> Any:
        """A few training rows the committee probes its members on."""
        return data.train.batch(torch.arange(min(rows, len(data.train))))


DOMAINS: Registry[Any] = Registry("domain")


def register_domain(name: str):
    """``@register_domain("rec")`` on a ``Domain`` subclass registers one instance of it."""

    def decorator(cls: type[Domain]) -> type[Domain]:
        cls.name = name
        DOMAINS.register(name)(cls())
        return cls

    return decorator

"""The recommendation domain: MovieLens click data, TorchRec models, AUC.

Why this file: it is everything the one runner (``train/runner.py``) needs to know about
recommendation, behind the ``Domain`` contract: read the data, build a registered model from
the data's cardinalities, BCE as the task loss, AUC / log loss / GAUC over all (gathered)
predictions with warm and cold users, and the model file (registry name + params + the
cardinalities and layout, so it rebuilds without the config, and a run refuses one trained on
other data: ``models/trained.py``). ``run_train`` / ``run_distill`` here are the runner bound to
this domain.
"""

from __future__ import annotations

import dataclasses

from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from recsys_committee.data.model_input.batching import RecDataset
from recsys_committee.data.features.loading import load_spec_data
from recsys_committee.data.model_input.model_data import save_data_facts
from recsys_committee.data.logs.movielens import SPEC_NAME, SPEC_ROOT, RecData, movielens_spec
from recsys_committee.data.logs.spec import DataSpec, load_spec
from recsys_committee.data.prepared.teacher_outputs import ShardInference  # noqa: F401  (registers the streamed_cache teacher)
from recsys_committee.domain import Domain, DOMAINS, register_domain
from recsys_committee.metrics import binary_metrics
from recsys_committee.models import build_model
from recsys_committee.models.trained import RecModelTeacher, check_trained_on, load_trained_model  # noqa: F401  (registers the rec_model teacher; re-exported)
from recsys_committee.models.registry import embedding_parameters
from recsys_committee.train import runner
from recsys_committee.errors import ConfigError
from recsys_committee.train.config import DataConfig, RunConfig
from recsys_committee.train.distributed import DistContext, Launch
from recsys_committee.train.rows import predict_logits

def data_spec(cfg: DataConfig) -> DataSpec:
    """The run's data spec: ``data.spec`` (``--data FILE``), else MovieLens-100K's; the run
    config's ``data.root`` / ``data.name`` (where MovieLens-shaped files are), ``max_rows``,
    ``fractions`` and history lengths override it when set."""
    if cfg.dataset not in (None, "movielens"):
        raise ConfigError(f"data.dataset: recommendation runs read a data spec (data.spec / --data FILE), got dataset '{cfg.dataset}'")
    if cfg.spec is None:
        spec = movielens_spec(cfg.root or SPEC_ROOT, cfg.name or SPEC_NAME, cfg.history_len, cfg.long_history_len, cfg.fractions, cfg.max_rows)
        return with_transfer_per_row(spec, cfg.transfer_per_row)
    spec = load_spec(cfg.spec)
    if cfg.max_rows is not None:
        spec.max_rows = cfg.max_rows
    if cfg.fractions is not None:
        spec.fractions = list(cfg.fractions)
    return with_transfer_per_row(spec, cfg.transfer_per_row)


def with_transfer_per_row(spec: DataSpec, per_row: Optional[int]) -> DataSpec:
    """``data.transfer_per_row`` over the spec's ``transfer.sampled.per_row`` (0 drops the
    sampled rows; a spec without a ``sampled`` entry gets one with the default seed)."""
    if per_row is None:
        return spec
    if per_row < 0:
        raise ConfigError(f"data.transfer_per_row must be >= 0, got {per_row}")
    transfer = {k: v for k, v in spec.transfer.items() if k != "sampled"}
    if per_row > 0:
        transfer["sampled"] = {"seed": 0, **spec.transfer.get("sampled", {}), "per_row": per_row}
    spec.transfer = transfer
    return spec


def prepared_transfer(data: Any, per_row: Optional[int]) -> Any:
    """``data.transfer_per_row`` on a prepared dataset, whose sampled pairs ``prepare`` drew: 0
    leaves them out (its unlabeled rows stay, as in memory); the count it was prepared with keeps
    them; another count is refused (it would need another prepare)."""
    if per_row is None or data.transfer is None:
        return data
    if per_row == 0:
        unlabeled = [u for u in data.transfer.units if u.source == "unlabeled"]
        return dataclasses.replace(data, transfer=data.transfer.with_units(unlabeled) if unlabeled else None)
    prepared = data.spec.transfer.get("sampled", {}).get("per_row")
    if per_row != prepared:
        raise ConfigError(f"data.transfer_per_row={per_row}: {data.root} was prepared with {prepared or 0} sampled pair(s) per train row "
                          "(prepare draws them): set transfer.sampled.per_row in the data spec and prepare again, or pass "
                          "data.transfer_per_row=0 to distil on the labeled rows only")
    return data


def load_data(cfg: DataConfig, transfer: bool = True) -> RecData:
    """The run's data: a prepared dataset folder (``--data DATASET_DIR``, told apart by its
    manifest) is streamed, or with ``data.sample_rows`` a seeded sample of it is held in memory;
    a data spec is read and featurised in memory. ``transfer=False`` leaves out the spec's
    transfer rows (the labeled rows' features do not depend on them)."""
    if cfg.spec is not None and Path(cfg.spec).is_dir():
        from recsys_committee.data.prepared.stream import open_prepared

        if cfg.sample_rows is not None:
            from recsys_committee.data.prepared.sample import sample_prepared

            return sample_prepared(open_prepared(cfg.spec), cfg.sample_rows, cfg.sample_seed)
        prepared = open_prepared(cfg.spec)
        return prepared_transfer(prepared, cfg.transfer_per_row) if transfer else dataclasses.replace(prepared, transfer=None)
    if cfg.sample_rows is not None:
        raise ConfigError("data.sample_rows samples a prepared dataset: pass --data DATASET_DIR (recsys-committee prepare)")
    return load_spec_data(data_spec(cfg), transfer=transfer)


def predict(model: nn.Module, dataset: RecDataset, batch_size: int, ctx: Optional[DistContext] = None) -> torch.Tensor:
    """Click probabilities for every row of ``dataset``, in row order (gathered over ranks)."""
    return torch.sigmoid(predict_logits(model, dataset, batch_size, ctx))


def split_metrics(probs: torch.Tensor, dataset: RecDataset, warm_users: Optional[torch.Tensor] = None) -> dict:
    """AUC, log loss, GAUC over all rows, and the same for warm (seen in train) and cold users."""
    result = binary_metrics(probs, dataset.labels, dataset.users)
    if warm_users is not None:
        warm = torch.isin(dataset.users, warm_users)
        for name, mask in (("warm", warm), ("cold", ~warm)):
            if mask.any() and dataset.labels[mask].unique().numel() == 2:
                result[name] = binary_metrics(probs[mask], dataset.labels[mask], dataset.users[mask])
    return result


@register_domain("rec")
class RecDomain(Domain):
    metric = "auc"

    def load_data(self, cfg: RunConfig, transfer: bool = True) -> RecData:
        return load_data(cfg.data, transfer=transfer)

    def build_model(self, cfg: RunConfig, data: RecData) -> nn.Module:
        return build_model(cfg.model.name, data.cardinalities, data.num_dense, data=data, **cfg.model.params)

    def task_loss(self, logits: torch.Tensor, batch: Any) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, batch.labels)

    def evaluate(self, model: nn.Module, data: RecData, split: str, cfg: RunConfig, ctx: DistContext) -> dict[str, Any]:
        dataset = data.dataset(split)
        return split_metrics(predict(model, dataset, cfg.train.eval_batch_size, ctx), dataset, data.warm_users())

    def model_payload(self, cfg: RunConfig, data: RecData, state: dict, epoch: int, val: dict[str, Any], method: Optional[str]) -> dict[str, Any]:
        payload = {
            "domain": self.name,
            "model": cfg.model.name,
            "params": cfg.model.params,
            "cardinalities": data.cardinalities,
            "num_dense": data.num_dense,
            "dense_names": list(data.table.dense_names),  # checked against a run's data when loaded with it
            "layout": data.table.layout.as_dict(),
            "state_dict": state,
            "epoch": epoch,
            "val_auc": val["auc"],
        }
        if method is not None:
            payload["method"] = method
        return payload

    def load_model(self, path: str | Path, data: Any = None) -> nn.Module:
        return load_trained_model(path, data).eval()

    def sparse_parameters(self, module: nn.Module) -> list[nn.Parameter]:
        return embedding_parameters(module)

    def prefetch_targets(self, predictor: nn.Module) -> list[tuple[nn.Module, Any]]:
        """The predictor's sharded ``PooledEmbeddings`` tables: called with ``batch.kjt(features)``
        (cached on the batch, so the prefetched KJT is the object the forward receives)."""
        from torchrec.distributed.types import ShardedModule

        from recsys_committee.models.student import PooledEmbeddings

        return [(m.ebc, lambda batch, keys=tuple(m.features): batch.kjt(keys))
                for m in predictor.modules() if isinstance(m, PooledEmbeddings) and isinstance(m.ebc, ShardedModule)]

    def write_data_files(self, out: Path, data: RecData) -> None:
        save_data_facts(out, data)

    def run_facts(self, data: RecData) -> dict[str, Any]:
        """What the data lacked that a model wanted (e.g. rated histories without a rating column)."""
        dropped = data.table.layout.dropped
        return {"dropped_features": dropped} if dropped else {}


REC: Domain = DOMAINS.get("rec")


def run_train(cfg: RunConfig, out: Path, data: Optional[RecData] = None, launch: Optional[Launch] = None, overwrite: bool = False) -> dict[str, Any]:
    """``recsys-committee train``: one model (student, expert, LM teacher). A non-empty ``out``
    is refused unless ``overwrite``."""
    return runner.run_train(REC, cfg, out, data, launch, overwrite)


def run_distill(cfg: RunConfig, out: Path, data: Optional[RecData] = None, launch: Optional[Launch] = None, overwrite: bool = False) -> dict[str, Any]:
    """``recsys-committee distill``: the committee into the student. A non-empty ``out`` is
    refused unless ``overwrite``."""
    return runner.run_distill(REC, cfg, out, data, launch, overwrite)


def run_with_ray(command: str, cfg: RunConfig, out: Path, name: Optional[str] = None, overwrite: bool = False) -> dict[str, Any]:
    """``train`` / ``distill`` on ``cfg.dist.num_workers`` Ray Train workers (``train/ray_entry.py``),
    each running this domain."""
    from recsys_committee.train import ray_entry

    return ray_entry.run_with_ray(command, cfg, out, f"{__name__}:{REC.name}", name=name, overwrite=overwrite)

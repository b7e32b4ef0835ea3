"""``recsys-committee train``: train one model (student, expert, or teacher) on MovieLens.

Writes DIR/config.yaml, DIR/metrics.json, DIR/model.pt (best validation epoch) and
DIR/curve.png. model.pt holds the registry name and parameters, so it rebuilds without the
config file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from recsys_committee.data.movielens import RecData, load_movielens
from recsys_committee.models import build_model, count_params
from recsys_committee.train.checkpoint import load_checkpoint, load_state_strict, save_checkpoint
from recsys_committee.train.config import DataConfig, RunConfig
from recsys_committee.train.loop import fit, seed_everything
from recsys_committee.train.sharded import Launch, begin_run, export_sharded, finish_run, setup_sharded


def load_data(cfg: DataConfig) -> RecData:
    if cfg.dataset != "movielens":
        raise ValueError(f"unknown data.dataset '{cfg.dataset}'; this command reads 'movielens'")
    return load_movielens(cfg.root, cfg.name, cfg.history_len, cfg.long_history_len, tuple(cfg.fractions), cfg.max_rows)


def load_trained_model(path: str | Path, data: RecData | None = None) -> torch.nn.Module:
    """Rebuild a model saved by ``train`` (name + params + cardinalities in the file)."""
    payload = load_checkpoint(path, required=("state_dict", "model", "params", "cardinalities", "num_dense"))
    model = build_model(payload["model"], payload["cardinalities"], payload["num_dense"], data=data, **payload["params"])
    load_state_strict(model, payload["state_dict"], path)
    return model


def run_train(
    cfg: RunConfig,
    out: Path,
    data: RecData | None = None,
    launch: Launch | None = None,
) -> dict[str, Any]:
    """One process by default; launched by Ray Train workers (``launch``) the tables are sharded
    as in ``run_distill`` and rank 0 writes the files."""
    launch = begin_run(cfg, out, launch)
    ctx, sharded = launch.ctx, launch.sharded
    generator = seed_everything(cfg.seed, cfg.train.deterministic)
    data = data or load_data(cfg.data)
    model = build_model(cfg.model.name, data.cardinalities, data.num_dense, data=data, **cfg.model.params)
    n_params = count_params(model)
    forward, optimizer, checkpointer = model, None, None
    if sharded:
        setup = setup_sharded(model, model, cfg, launch, out)
        forward, optimizer, checkpointer = setup.model, setup.optimizer, setup.checkpointer

    def loss_fn(batch, step):
        return F.binary_cross_entropy_with_logits(forward(batch).logits, batch.labels), {}

    def payload(state: dict, epoch: int, val_auc: float) -> dict[str, Any]:
        return {
            "model": cfg.model.name,
            "params": cfg.model.params,
            "cardinalities": data.cardinalities,
            "num_dense": data.num_dense,
            "state_dict": state,
            "epoch": epoch,
            "val_auc": val_auc,
        }

    def save_best(predictor, epoch, val):
        if not sharded:  # sharded: model.pt is assembled from the shards at the end
            save_checkpoint(out / "model.pt", payload(predictor.state_dict(), epoch, val["auc"]))

    result = fit(
        forward, model, loss_fn, data, cfg.train, cfg.optim, generator, on_best=save_best, description=cfg.model.name,
        ctx=ctx, optimizer=optimizer, checkpointer=checkpointer, on_step=launch.on_step,
    )
    if sharded:
        export_sharded(
            model, lambda: build_model(cfg.model.name, data.cardinalities, data.num_dense, data=data, **cfg.model.params), out / "model.pt",
            lambda state: payload(state, result.best_epoch, result.val["auc"]), ctx,
        )
    metrics = {"model": cfg.model.name, "seed": cfg.seed, "params": n_params, "world_size": ctx.world_size, **result.as_metrics()}
    return finish_run(metrics, result, forward if sharded else None, out, ctx, f"{cfg.model.name} (seed {cfg.seed})")

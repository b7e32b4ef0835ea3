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
from recsys_committee.train.config import DataConfig, RunConfig, dump_config
from recsys_committee.train.loop import fit, seed_everything, write_json
from recsys_committee.train.plots import plot_learning_curve


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


def run_train(cfg: RunConfig, out: Path, data: RecData | None = None) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "config.yaml")
    generator = seed_everything(cfg.seed, cfg.train.deterministic)
    data = data or load_data(cfg.data)
    model = build_model(cfg.model.name, data.cardinalities, data.num_dense, data=data, **cfg.model.params)

    def loss_fn(batch, step):
        return F.binary_cross_entropy_with_logits(model(batch).logits, batch.labels), {}

    def save_best(predictor, epoch, val):
        save_checkpoint(
            out / "model.pt",
            {
                "model": cfg.model.name,
                "params": cfg.model.params,
                "cardinalities": data.cardinalities,
                "num_dense": data.num_dense,
                "state_dict": predictor.state_dict(),
                "epoch": epoch,
                "val_auc": val["auc"],
            },
        )

    result = fit(model, model, loss_fn, data, cfg.train, cfg.optim, generator, on_best=save_best, description=cfg.model.name)
    metrics = {
        "model": cfg.model.name,
        "seed": cfg.seed,
        "params": count_params(model),
        **result.as_metrics(),
    }
    write_json(out / "metrics.json", metrics)
    plot_learning_curve(result.history, out / "curve.png", f"{cfg.model.name} (seed {cfg.seed})")
    return metrics

"""``python -m vision_committee train|distill``: the recommendation runs' contract, for images.

Same loop (``recsys_committee.train.loop.fit``: best validation epoch, then test), same
committee (``recsys_committee.committee``), same files: DIR/config.yaml, DIR/metrics.json
(method, parameter counts, val/test metrics with ``top1`` as the metric of record, teacher
forwards run vs dense, per-epoch history and seconds), DIR/model.pt or DIR/student.pt (the bare
exported student, loadable with ``load_vision_model`` and no committee code) and DIR/curve.png.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from recsys_committee.committee import Committee
from recsys_committee.train.config import ConfigError, RunConfig
from recsys_committee.train.loop import fit, seed_everything
from recsys_committee.train.run_distill import build_teachers, committee_config, committee_params
from recsys_committee.train.sharded import begin_run, finish_run
from vision_committee import teachers as _teachers  # noqa: F401  (registers the vision teachers)
from vision_committee.checkpoint import save_vision_model, vision_payload
from vision_committee.data import VisionData, load_fashion_mnist
from vision_committee.evaluate import classification_metrics, predict_logits
from vision_committee.models import VISION_MODELS, build_vision_model, count_params

DATASETS = ("fashion_mnist",)
METRIC = "top1"


def load_vision_data(cfg: RunConfig) -> VisionData:
    _check_config(cfg)
    return load_fashion_mnist(cfg.data.root, max_train_rows=cfg.data.max_rows)


def _check_config(cfg: RunConfig) -> None:
    """What only the vision side refuses (checked even when the caller passes the data)."""
    if cfg.data.dataset not in DATASETS:
        raise ConfigError(f"data.dataset: the vision runs read {DATASETS}, got '{cfg.data.dataset}'")
    if cfg.dist.num_workers > 1 or cfg.dist.use_gpu:
        raise ConfigError("dist.*: vision runs are single-process (no sharded tables); multi-worker training is the recommendation side's")


def make_evaluate(data: VisionData, batch_size: int):
    def evaluate(model: torch.nn.Module, split: str) -> dict[str, Any]:
        part = getattr(data, split)
        return classification_metrics(predict_logits(model, part, batch_size), part.labels)

    return evaluate


def build_model(cfg: RunConfig) -> torch.nn.Module:
    VISION_MODELS.get(cfg.model.name)  # unknown names fail with the close matches
    return build_vision_model(cfg.model.name, **cfg.model.params)


def run_vision_train(cfg: RunConfig, out: Path, data: VisionData | None = None) -> dict[str, Any]:
    """Train one classifier (a teacher, or the no-KD student) with cross-entropy."""
    _check_config(cfg)
    launch = begin_run(cfg, out, None)
    generator = seed_everything(cfg.seed, cfg.train.deterministic)
    data = data or load_vision_data(cfg)
    model = build_model(cfg)

    def loss_fn(batch, step):
        loss = F.cross_entropy(model(batch).logits, batch.labels)
        return loss, {"task": loss}

    def save_best(predictor, epoch, val):
        save_vision_model(out / "model.pt", vision_payload(cfg.model.name, cfg.model.params, predictor.state_dict(), epoch, val))

    result = fit(model, model, loss_fn, data, cfg.train, cfg.optim, generator, on_best=save_best, description=cfg.model.name,
                 evaluate=make_evaluate(data, cfg.train.eval_batch_size), metric=METRIC)
    metrics = {"domain": "vision", "model": cfg.model.name, "params": count_params(model), "seed": cfg.seed,
               "train_rows": len(data.train), **result.as_metrics()}
    return finish_run(metrics, result, None, out, launch.ctx, f"{cfg.model.name} (seed {cfg.seed})")


def run_vision_distill(cfg: RunConfig, out: Path, data: VisionData | None = None) -> dict[str, Any]:
    """Distil the committee (``cfg.teachers``) into the student with ``cfg.committee.method``."""
    _check_config(cfg)
    launch = begin_run(cfg, out, None)
    ccfg = committee_config(cfg)
    generator = seed_everything(cfg.seed, cfg.train.deterministic)
    data = data or load_vision_data(cfg)
    teachers = build_teachers(cfg.teachers, cfg.teacher_dir, data, cfg.train.progress) if ccfg.method != "no_kd" else []
    student = build_model(cfg)
    probe = data.train.batch(torch.arange(min(256, len(data.train))))
    committee = Committee.build(student, teachers, probe, ccfg)
    params = committee_params(committee)

    def loss_fn(batch, step):
        result = committee(batch, step)
        return result.loss, result.terms

    def save_best(predictor, epoch, val):
        save_vision_model(out / "student.pt", vision_payload(cfg.model.name, cfg.model.params, predictor.state_dict(), epoch, val, ccfg.method))

    result = fit(committee, committee.student, loss_fn, data, cfg.train, cfg.optim, generator, on_best=save_best, description=ccfg.method,
                 evaluate=make_evaluate(data, cfg.train.eval_batch_size), metric=METRIC)
    metrics = {
        "domain": "vision",
        "method": ccfg.method,
        "gate": ccfg.gate if ccfg.method == "diverse_distill" else None,
        "seed": cfg.seed,
        "train_rows": len(data.train),
        **params,
        "teacher_forwards": committee.teacher_forwards(),
        **result.as_metrics(),
    }
    return finish_run(metrics, result, None, out, launch.ctx, f"{ccfg.method} (seed {cfg.seed})")

"""``recsys-committee distill``: distil a committee of frozen teachers into the student.

The same loop as ``train`` (best validation epoch, then test), with the committee's loss and
the student as the predictor. Writes DIR/config.yaml, DIR/metrics.json (method, parameter
counts, test metrics, teacher forwards run vs dense), DIR/student.pt (the exported bare
student: rebuilt by ``load_trained_model`` with no committee code) and DIR/curve.png.
"""

from __future__ import annotations

import copy
import inspect
from pathlib import Path
from typing import Any

import torch

from recsys_committee.committee import TEACHERS, Committee, CommitteeConfig, build_teacher, export_student
from recsys_committee.data.movielens import RecData
from recsys_committee.models import build_model, count_params
from recsys_committee.models import teachers as _teachers  # noqa: F401  (registers rec teachers)
from recsys_committee.train.checkpoint import save_checkpoint
from recsys_committee.train.config import ConfigError, RunConfig, from_dict
from recsys_committee.train.loop import fit, seed_everything
from recsys_committee.train.sharded import Launch, begin_run, export_sharded, finish_run, setup_sharded
from recsys_committee.train.run_train import load_data


def build_teachers(specs: list[dict[str, Any]], teacher_dir: str = "runs/teachers", data: RecData | None = None,
                   progress: bool = True) -> list:
    """The YAML ``teachers:`` list, built through the registry. ``data`` and ``progress`` go only
    to builders that take them (the LM renders texts from the data; a cached teacher shows a bar
    while it fills its cache, which ``train.progress: false`` must silence as well)."""
    teachers = []
    for i, spec in enumerate(specs):
        spec = {k: v.replace("{teacher_dir}", teacher_dir) if isinstance(v, str) else v for k, v in spec.items()}
        if "kind" not in spec or "name" not in spec:
            raise ConfigError(f"teachers[{i}] needs 'name' and 'kind' (a registered teacher), got {sorted(spec)}")
        kind = spec.pop("kind")
        accepts = inspect.signature(TEACHERS.get(kind)).parameters
        if data is not None and "data" in accepts:
            spec["data"] = data  # teachers that render inputs from the data (the LM teachers)
        if "progress" in accepts:
            spec.setdefault("progress", progress)
        teachers.append(build_teacher(kind, **spec))
    names = [t.name for t in teachers]
    if len(set(names)) != len(names):
        raise ConfigError(f"teacher names must be unique, got {names}")
    return teachers


def committee_params(committee: Committee) -> dict[str, Any]:
    """metrics.json's parameter counts: the exported student, each teacher (a cached teacher
    reports the model it was computed from) and the distillation module that is dropped."""
    teachers = list(committee.teachers)
    return {
        "student_params": count_params(export_student(committee)),
        "teacher_params": {t.name: getattr(t, "teacher_params", None) or count_params(t.model) for t in teachers},
        "distill_module_params": count_params(committee) - count_params(committee.student) - sum(count_params(t.model) for t in teachers),
    }


def committee_config(cfg: RunConfig) -> CommitteeConfig:
    return from_dict(CommitteeConfig, cfg.committee or {}, prefix="committee.")


def run_distill(
    cfg: RunConfig,
    out: Path,
    data: RecData | None = None,
    launch: Launch | None = None,
) -> dict[str, Any]:
    """Single process by default. Launched by Ray Train workers (``launch``; world size 1
    included) the committee's embedding tables are sharded with DMP, rows are split across
    ranks, AUC is computed over the gathered predictions, state is checkpointed with DCP
    under ``out/checkpoints`` (resumed from ``launch.restore_from``) and rank 0 writes the files."""
    launch = begin_run(cfg, out, launch)
    ctx, sharded = launch.ctx, launch.sharded
    ccfg = committee_config(cfg)
    generator = seed_everything(cfg.seed, cfg.train.deterministic)
    data = data or load_data(cfg.data)
    teachers = build_teachers(cfg.teachers, cfg.teacher_dir, data, cfg.train.progress) if ccfg.method != "no_kd" else []
    student = build_model(cfg.model.name, data.cardinalities, data.num_dense, **cfg.model.params)
    probe = data.train.batch(torch.arange(min(256, len(data.train))))
    committee = Committee.build(student, teachers, probe, ccfg)
    params = committee_params(committee)  # counted before sharding: a sharded table's parameters are local shards
    model: torch.nn.Module = committee
    optimizer = checkpointer = None
    if sharded:
        committee.row_sync = ctx.max_int
        setup = setup_sharded(committee, committee.student, cfg, launch, out, counter=committee.counter)
        model, optimizer, checkpointer = setup.model, setup.optimizer, setup.checkpointer

    def loss_fn(batch, step):
        result = model(batch, step)
        return result.loss, result.terms

    def save_best(predictor, epoch, val):
        if sharded:
            return  # sharded tables: student.pt is assembled from the DCP checkpoint at the end
        save_checkpoint(out / "student.pt", student_payload(cfg, data, predictor.state_dict(), epoch, val["auc"], ccfg.method))

    result = fit(
        model, committee.student, loss_fn, data, cfg.train, cfg.optim, generator, on_best=save_best, description=ccfg.method,
        ctx=ctx, optimizer=optimizer, checkpointer=checkpointer, on_step=launch.on_step,
    )
    committee.counter.reduce(ctx.sum_ints)
    if sharded:
        export_sharded(
            committee.student, lambda: build_model(cfg.model.name, data.cardinalities, data.num_dense, **cfg.model.params), out / "student.pt",
            lambda state: student_payload(cfg, data, state, result.best_epoch, result.val["auc"], ccfg.method), ctx,
        )
    forwards = committee.teacher_forwards()
    metrics = {
        "method": ccfg.method,
        "gate": ccfg.gate if ccfg.method == "diverse_distill" else None,
        "seed": cfg.seed,
        "world_size": ctx.world_size,
        **params,
        "teacher_forwards": forwards,
        **result.as_metrics(),
    }
    return finish_run(metrics, result, model if sharded else None, out, ctx, f"{ccfg.method} (seed {cfg.seed})")


def student_payload(cfg: RunConfig, data: RecData, state: dict, epoch: int, val_auc: float, method: str) -> dict[str, Any]:
    return {
        "model": cfg.model.name,
        "params": cfg.model.params,
        "cardinalities": data.cardinalities,
        "num_dense": data.num_dense,
        "state_dict": copy.deepcopy(state),
        "epoch": epoch,
        "val_auc": val_auc,
        "method": method,
    }

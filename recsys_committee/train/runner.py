"""The one ``train`` / ``distill`` runner, for every domain.

``run_train`` trains one model with its task loss; ``run_distill`` distils a committee of frozen
teachers into the student. Both: seed, load the data, build, (shard under Ray Train), build the
optimisers explicitly, run the loop (best validation epoch, then test), write DIR/config.yaml,
DIR/metrics.json, the model file and DIR/curve.png. A non-empty DIR is refused unless
``overwrite`` (``--overwrite``), and config.yaml is written only once the data loaded and the
model or committee was built: a run that fails on its inputs writes nothing. The domain (``recsys_committee.domain``)
supplies the data, the models, the task loss, the evaluation and the model files; nothing here
imports TorchRec or a dataset.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

from recsys_committee.committee import TEACHERS, Committee, CommitteeConfig, TapPathError, TeacherContext, build_teacher, count_params, export_student
from recsys_committee.committee.committee import check_losses
from recsys_committee.committee.config import NonFiniteLossError
from recsys_committee.domain import Domain
from recsys_committee.errors import UserError
from recsys_committee.train.checkpoint import save_checkpoint
from recsys_committee.errors import ConfigError
from recsys_committee.train.config import RunConfig, dump_config, from_dict
from recsys_committee.train.distributed import DistContext, Launch, describe_plan
from recsys_committee.train.input_prefetch import InputDistPrefetch
from recsys_committee.files import write_json
from recsys_committee.heap import hold_freed_heap
from recsys_committee.train.loop import FitResult, fit
from recsys_committee.train.optimizers import build_optimizers
from recsys_committee.train.out_dir import check_out, clear_run
from recsys_committee.train.plots import plot_learning_curve


class EmptySplitError(UserError):
    """A split the run needs has no rows."""


# ----------------------------------------------------------------------------------- start / finish
def seed_everything(seed: int, deterministic: bool = True) -> torch.Generator:
    """Seed Python, NumPy and torch; the generator the loop shuffles with."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


def begin_run(domain: Domain, cfg: RunConfig, out: Path, launch: Optional[Launch], overwrite: bool = False) -> Launch:
    """(rank 0) OUT is empty or ``overwrite`` was given. Writes nothing: see ``inputs_validated``.
    (A domain refuses a config it cannot run in its ``load_data``, before anything is written.)"""
    launch = launch or Launch()
    if launch.ctx.is_main and not launch.out_prepared:
        check_out(out, overwrite)
    return launch


def inputs_validated(domain: Domain, cfg: RunConfig, out: Path, launch: Launch, overwrite: bool = False, data: Any = None) -> None:
    """The data loaded and the model or committee was built: rank 0 removes the previous run's
    files (``overwrite``; Ray Train's driver did it before launching), creates OUT and writes
    the run's config and what the domain keeps of the data (a model directory scores on its own)."""
    if launch.ctx.is_main:
        if overwrite and not launch.out_prepared and out.is_dir():
            clear_run(out, (domain.model_file, domain.student_file))
        out.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, out / "config.yaml")
        domain.write_data_files(out, data)


def check_splits(data: Any, cfg: RunConfig) -> None:
    """Refuse a split that would fail deep inside the loop (no batch to train on, nothing to
    select the best epoch on, nothing to test)."""
    for split in ("train", "val", "test"):
        if len(getattr(data, split)) == 0:
            raise EmptySplitError(f"data: the {split} split is empty (check data.fractions and data.max_rows)")


def peak_rss_kib() -> int:
    """This process's peak resident memory (Linux reports KiB)."""
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def code_commit() -> Optional[str]:
    """The git commit of the code this run used (results name what measured them); None when the
    package is not a git checkout (an installed wheel)."""
    import subprocess

    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def finish_run(metrics: dict[str, Any], result: FitResult, sharded_model: Optional[nn.Module], out: Path, ctx: DistContext, title: str) -> dict[str, Any]:
    """Add the sharding facts, then rank 0 writes metrics.json and the learning curve."""
    if sharded_model is not None:
        metrics["sharding_plan"] = describe_plan(sharded_model)
        metrics["resumed_from_step"] = result.resumed_from_step
    metrics["commit"] = code_commit()
    metrics["peak_rss_gib_per_rank"] = [v / 2**20 for v in ctx.all_gather_cat(torch.tensor([peak_rss_kib()], dtype=torch.long)).tolist()]
    if ctx.is_main:
        write_json(out / "metrics.json", metrics)
        plot_learning_curve(result.history, out / "curve.png", title)
    return metrics


# ----------------------------------------------------------------------------------- committee pieces
def build_teachers(specs: list[dict[str, Any]], teacher_dir: str = "runs/teachers", context: Optional[TeacherContext] = None) -> list:
    """The YAML ``teachers:`` list, built through the registry; every builder gets ``context``."""
    context = context or TeacherContext()
    teachers = []
    for i, spec in enumerate(specs):
        spec = {k: v.replace("{teacher_dir}", teacher_dir) if isinstance(v, str) else v for k, v in spec.items()}
        if "kind" not in spec or "name" not in spec:
            raise ConfigError(f"teachers[{i}] needs 'name' and 'kind' (a registered teacher), got {sorted(spec)}")
        kind = spec.pop("kind")
        TEACHERS.get(kind)  # an unknown kind fails with the close matches
        logit_target = spec.pop("logit_target", True)  # every kind takes it: the committee reads it
        if not isinstance(logit_target, bool):
            raise ConfigError(f"teachers[{i}] ('{spec['name']}'): logit_target must be true or false, got {logit_target!r}")
        try:
            teacher = build_teacher(kind, context=context, **spec)
        except TapPathError as exc:  # the tap names a module this model does not have: say whose and which file
            where = f" from {spec['checkpoint']}" if "checkpoint" in spec else ""
            raise TapPathError(f"teacher '{spec['name']}' (kind '{kind}'{where}): {exc}") from exc
        teacher.logit_target = logit_target
        teachers.append(teacher)
    names = [t.name for t in teachers]
    if len(set(names)) != len(names):
        raise ConfigError(f"teacher names must be unique, got {names}")
    return teachers


def committee_config(cfg: RunConfig) -> CommitteeConfig:
    ccfg = from_dict(CommitteeConfig, cfg.committee or {}, prefix="committee.")
    check_losses(ccfg)  # now, before any teacher is built or cached
    return ccfg


def committee_params(committee: Committee) -> dict[str, Any]:
    """metrics.json's parameter counts: the exported student, each teacher (a cached teacher
    reports the model it was computed from) and the distillation module that is dropped."""
    teachers = list(committee.teachers)
    return {
        "student_params": count_params(export_student(committee)),
        "teacher_params": {t.name: getattr(t, "teacher_params", None) or count_params(t.model) for t in teachers},
        "distill_module_params": count_params(committee) - count_params(committee.student) - sum(count_params(t.model) for t in teachers),
    }


# ----------------------------------------------------------------------------------- the runs
def run_train(domain: Domain, cfg: RunConfig, out: Path, data: Any = None, launch: Optional[Launch] = None, overwrite: bool = False) -> dict[str, Any]:
    """Train one model (a student, an expert, a teacher) with the domain's task loss."""
    launch = begin_run(domain, cfg, out, launch, overwrite)
    generator = seed_everything(cfg.seed, cfg.train.deterministic)
    data = data if data is not None else domain.load_data(cfg, transfer=False)  # a plain training run reads labeled rows only
    check_splits(data, cfg)
    model = domain.build_model(cfg, data)
    inputs_validated(domain, cfg, out, launch, overwrite, data)
    n_params = count_params(model)
    trainable = [p for p in model.parameters() if p.requires_grad]

    def loss_fn(forward: nn.Module) -> Callable:
        def loss(batch, step):
            value = domain.task_loss(forward(batch).logits, batch)
            return value, {"task": value}

        return loss

    result, trained = _fit(domain, cfg, out, data, launch, generator, model, model, trainable, loss_fn, domain.model_file,
                           method=None, description=cfg.model.name)
    metrics = {"domain": domain.name, "model": cfg.model.name, "seed": cfg.seed, "params": n_params, "world_size": launch.ctx.world_size,
               **domain.run_facts(data), **result.as_metrics()}
    return finish_run(metrics, result, trained if launch.sharded else None, out, launch.ctx, f"{cfg.model.name} (seed {cfg.seed})")


def run_distill(domain: Domain, cfg: RunConfig, out: Path, data: Any = None, launch: Optional[Launch] = None, overwrite: bool = False) -> dict[str, Any]:
    """Distil the committee (``cfg.teachers``) into the student with ``cfg.committee.method``.
    Launched by Ray Train workers the embedding tables are sharded with DMP, rows are split
    across ranks, metrics are computed over gathered predictions, state is checkpointed with DCP
    (resumed from ``launch.restore_from``) and rank 0 writes the files."""
    launch = begin_run(domain, cfg, out, launch, overwrite)
    ccfg = committee_config(cfg)
    if cfg.train.hold_heap:
        hold_freed_heap()  # this process (each Ray worker calls it in its own)
    generator = seed_everything(cfg.seed, cfg.train.deterministic)
    # without a teacher nothing can be learnt from a row without a label: no-KD neither reads nor builds them
    reads_transfer = ccfg.transfer and ccfg.method != "no_kd"
    data = data if data is not None else domain.load_data(cfg, transfer=reads_transfer)
    check_splits(data, cfg)
    context = TeacherContext(data=data, progress=cfg.train.progress)
    teachers = build_teachers(cfg.teachers, cfg.teacher_dir, context) if ccfg.method != "no_kd" else []
    labeled_rows = len(data.train)
    if reads_transfer and teachers:
        if len(getattr(data, "transfer", None) or ()) == 0:
            if launch.ctx.is_main:
                print("distill: committee.transfer is on but the data declares no transfer rows (the data spec's 'transfer:' section); "
                      "distilling on the labeled rows only", flush=True)
        else:
            data = domain.with_transfer(data)
    transfer = {"rows": len(data.train) - labeled_rows, "per_labeled_row": (len(data.train) - labeled_rows) / max(labeled_rows, 1),
                "weight": ccfg.transfer_weight}
    student = domain.build_model(cfg, data)
    committee = Committee.build(student, teachers, domain.probe_batch(data), ccfg)
    params = committee_params(committee)  # counted before sharding: a sharded table's parameters are local shards
    inputs_validated(domain, cfg, out, launch, overwrite, data)

    def loss_fn(forward: nn.Module) -> Callable:
        def loss(batch, step):
            result = forward(batch, step)
            return result.loss, result.terms

        return loss

    result, trained = _fit(domain, cfg, out, data, launch, generator, committee, committee.student, committee.trainable_parameters(),
                           loss_fn, domain.student_file, method=ccfg.method, description=ccfg.method, committee=committee)
    committee.counter.reduce(launch.ctx.sum_ints)
    metrics = {
        "domain": domain.name,
        "method": ccfg.method,
        "gate": ccfg.gate if ccfg.method == "diverse_distill" else None,
        "seed": cfg.seed,
        "world_size": launch.ctx.world_size,
        **domain.run_facts(data),
        **params,
        "teacher_forwards": committee.teacher_forwards(),
        "transfer": transfer,
        **result.as_metrics(),
    }
    return finish_run(metrics, result, trained if launch.sharded else None, out, launch.ctx, f"{ccfg.method} (seed {cfg.seed})")


def _fit(
    domain: Domain, cfg: RunConfig, out: Path, data: Any, launch: Launch, generator: torch.Generator, module: nn.Module,
    predictor: nn.Module, trainable: list[nn.Parameter], make_loss: Callable[[nn.Module], Callable], file_name: str,
    method: Optional[str], description: str, committee: Optional[Committee] = None,
) -> tuple[FitResult, nn.Module]:
    """What train and distill share: optimisers (sharded or not), the loop, the best model file.
    Returns the loop's result and the module that was trained (DMP-wrapped when sharded)."""
    ctx, path = launch.ctx, out / file_name
    sparse = domain.sparse_parameters(module)
    forward, checkpointer, prefetch = module, None, None
    if launch.sharded:
        from recsys_committee.train.sharded import setup_sharded

        is_frozen = committee.is_frozen_key if committee is not None else (lambda key: False)
        if committee is not None:
            committee.row_sync = ctx.max_int
        setup = setup_sharded(module, predictor, trainable, sparse, is_frozen, cfg, launch, out,
                              counter=committee.counter if committee is not None else None)
        forward, optimizers, checkpointer = setup.model, setup.optimizers, setup.checkpointer
        if cfg.train.overlap_input_dist:
            prefetch = InputDistPrefetch(domain.prefetch_targets(predictor))
    else:
        optimizers = build_optimizers(trainable, sparse, cfg.optim, names={id(p): n for n, p in module.named_parameters()})

    def payload(state: dict, epoch: int, val: dict[str, Any]) -> dict[str, Any]:
        return domain.model_payload(cfg, data, copy.deepcopy(state), epoch, val, method)

    def save_best(best: nn.Module, epoch: int, val: dict[str, Any]) -> None:
        if not launch.sharded:  # sharded: the file is assembled from the shards at the end
            save_checkpoint(path, payload(best.state_dict(), epoch, val))

    try:
        result = fit(
            forward, predictor, make_loss(forward), data, cfg.train, generator, optimizers,
            evaluate=lambda model, split: domain.evaluate(model, data, split, cfg, ctx), metric=domain.metric,
            on_best=save_best, description=description, ctx=ctx, checkpointer=checkpointer, on_step=launch.on_step,
            prefetch=prefetch,
        )
    except NonFiniteLossError as exc:
        last = checkpointer.latest() if checkpointer is not None else (path if path.is_file() else None)
        raise exc.with_last_good(str(last) if last else None) from exc
    finally:
        if prefetch is not None:
            prefetch.close()
    if launch.sharded:
        from recsys_committee.train.sharded import export_sharded

        export_sharded(predictor, lambda: domain.build_model(cfg, data), path, lambda state: payload(state, result.best_epoch, result.val), ctx)
    return result, forward

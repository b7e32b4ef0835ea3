"""Functions run inside the spawned gloo processes of test_distributed.py (importable by name)."""

from __future__ import annotations

import copy
import gc
import shutil
from pathlib import Path

import torch
import torch.distributed
import torch.nn.functional as F


def in_sequence(rank: int, world: int, calls: list[tuple]) -> list:
    """Several checks on one process group, one after the other: ``calls`` are ``(fn, *args)``;
    returns each call's result, in order. (Spawning the ranks and importing TorchRec in them is
    most of a small check's time.) Between calls every rank drops the previous call's objects
    and waits for the others, so no call sees another's sharded modules or collectives."""
    results = []
    for fn, *args in calls:
        results.append(fn(rank, world, *args))
        gc.collect()
        torch.distributed.barrier()
    return results


def sharded_vs_plain(rank: int, world: int, data_dir: str, sharding_type: str) -> dict:
    """Forward, backward and one embedding update of the DMP-sharded student against the same
    student unsharded on the whole batch."""
    from recsys_committee.data.logs.movielens import load_movielens
    from recsys_committee.models import build_model
    from recsys_committee.models.registry import embedding_parameters
    from recsys_committee.train.config import OptimConfig
    from recsys_committee.train.distributed import DistContext, shard_model
    from recsys_committee.train.optimizers import attach_fused_sparse_optimizer

    torch.manual_seed(0)
    data = load_movielens(data_dir, "ml-tiny")
    plain = build_model("student", data.cardinalities, data.num_dense, data=data, hidden=[32, 16], cross_rank=8)
    twin = copy.deepcopy(plain)
    per_rank = len(data.train) // world
    batch = data.train.batch(torch.arange(per_rank * world))
    lr = 0.5

    out = plain(batch)
    F.binary_cross_entropy_with_logits(out.logits, batch.labels).backward()
    after_plain = {}
    for factor in (1, world):
        stepped = copy.deepcopy(plain)
        with torch.no_grad():  # the plain SGD step on the tables that the fused kernel takes
            for p, g in zip(embedding_parameters(stepped), embedding_parameters(plain)):
                p -= lr * factor * g.grad
        after_plain[factor] = stepped(batch).logits.detach()

    ctx = DistContext.from_process_group()
    attach_fused_sparse_optimizer(embedding_parameters(twin), OptimConfig(embedding_optimizer="sgd", embedding_lr=lr))
    model = shard_model(twin, ctx, sharding_type)
    rows = torch.arange(rank * per_rank, (rank + 1) * per_rank)
    local = batch.subset(rows)
    s_out = model(local)
    F.binary_cross_entropy_with_logits(s_out.logits, local.labels).backward()
    tables = {id(p) for p in embedding_parameters(plain)}
    dense_plain = {n: p for n, p in plain.named_parameters() if id(p) not in tables}
    grads_equal = all(
        torch.allclose(p.grad, dense_plain[n].grad, atol=1e-6)
        for n, p in model.module.named_parameters()
        if n in dense_plain and p.grad is not None
    )
    n_dense_grads = sum(1 for n, p in model.module.named_parameters() if n in dense_plain and p.grad is not None)
    after = model(local).logits.detach()
    return {
        "forward_max_diff": float((s_out.logits.detach() - out.logits.detach()[rows]).abs().max()),
        "dense_grads_equal": grads_equal,
        "n_dense_grads": n_dense_grads,
        "after_update_max_diff": {f: float((after - a[rows]).abs().max()) for f, a in after_plain.items()},
        "plan": {k: v for k, v in model.plan.plan.items()},
    }


def distill_run(rank: int, world: int, cfg_overrides: list[str], out: str, restore_from: str | None = None) -> dict:
    from recsys_committee.data.logs.movielens import load_movielens
    from recsys_committee.train.config import load_config
    from recsys_committee.train.distributed import DistContext
    from recsys_committee.rec_domain import run_distill
    from recsys_committee.train.distributed import Launch

    root = Path(__file__).resolve().parents[2]
    cfg = load_config(root / "configs/rec/diverse_distill.yaml", cfg_overrides)
    data = load_movielens(cfg.data.root, max_rows=cfg.data.max_rows)
    launch = Launch(DistContext.from_process_group(), restore_from=restore_from, report=lambda p, s: None)
    metrics = run_distill(cfg, Path(out), data=data, launch=launch, overwrite=True)  # restore_errors reuses one folder
    return {k: metrics[k] for k in ("test", "val", "teacher_forwards", "steps", "resumed_from_step", "world_size", "student_params", "history")}


def train_run(rank: int, world: int, cfg_overrides: list[str], out: str) -> dict:
    """``train`` of the student on ``world`` ranks (sharded, as under Ray Train)."""
    from recsys_committee.data.logs.movielens import load_movielens
    from recsys_committee.rec_domain import run_train
    from recsys_committee.train.config import load_config
    from recsys_committee.train.distributed import DistContext, Launch

    root = Path(__file__).resolve().parents[2]
    cfg = load_config(root / "configs/rec/student.yaml", cfg_overrides)
    data = load_movielens(cfg.data.root, max_rows=cfg.data.max_rows)
    metrics = run_train(cfg, Path(out), data=data, launch=Launch(DistContext.from_process_group(), report=lambda p, s: None), overwrite=True)
    return {k: metrics[k] for k in ("test", "val", "steps", "prefetched_steps", "history")}


def restore_errors(rank: int, world: int, cfg_overrides: list[str], out: str, checkpoints: list[str]) -> list[str]:
    """Try to resume from each (broken) checkpoint; return the error messages."""
    from recsys_committee.train.checkpoint import CheckpointError

    messages = []
    for path in checkpoints:
        try:
            distill_run(rank, world, cfg_overrides, out, restore_from=path)
            messages.append("no error")
        except CheckpointError as exc:
            messages.append(str(exc))
    return messages


def copy_checkpoint(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def sharded_teachers_stay_frozen(rank: int, world: int, teacher_dir: str, data_root: str, out: str) -> dict:
    """Shard a gated committee, train a few steps, and compare each sharded teacher's outputs
    on a fixed batch before and after (and their parameters' requires_grad)."""
    from recsys_committee.committee import Committee
    from recsys_committee.data.logs.movielens import load_movielens
    from recsys_committee.models import build_model
    from recsys_committee.train.config import load_config
    from recsys_committee.train.distributed import DistContext
    from recsys_committee.train.runner import TeacherContext, build_teachers, committee_config
    from recsys_committee.rec_domain import REC
    from recsys_committee.train.distributed import Launch
    from recsys_committee.train.sharded import setup_sharded

    root = Path(__file__).resolve().parents[2]
    cfg = load_config(root / "configs/rec/diverse_distill.yaml", [f"teacher_dir={teacher_dir}", "model.params.hidden=[64,32]", "committee.gate_config.warmup_steps=0"])
    data = load_movielens(data_root, max_rows=20000)
    torch.manual_seed(0)
    teachers = build_teachers(cfg.teachers, cfg.teacher_dir, TeacherContext(data))
    student = build_model(cfg.model.name, data.cardinalities, data.num_dense, data=data, **cfg.model.params)
    committee = Committee.build(student, teachers, data.train.batch(torch.arange(256)), committee_config(cfg))
    plain_logits = {t.name: t.run(data.train.batch(torch.arange(rank * 64, (rank + 1) * 64))).logits.clone() for t in committee.teachers}
    ctx = DistContext.from_process_group()
    committee.row_sync = ctx.max_int
    setup = setup_sharded(committee, committee.student, committee.trainable_parameters(), REC.sparse_parameters(committee), committee.is_frozen_key,
                          cfg, Launch(ctx), Path(out) / f"rank{rank}")
    probe = data.train.batch(torch.arange(rank * 64, (rank + 1) * 64))
    before = {t.name: t.run(probe).logits.clone() for t in committee.teachers}
    for step in range(4):
        batch = data.train.batch(torch.arange(1000 + (2 * step + rank) * 128, 1000 + (2 * step + rank + 1) * 128))
        out = setup.model(batch, step)
        setup.optimizers.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        setup.optimizers.optimizer.step()
    after = {t.name: t.run(probe).logits.clone() for t in committee.teachers}
    return {
        "sharded_equals_plain": {n: float((before[n] - plain_logits[n]).abs().max()) for n in before},
        "after_minus_before": {n: float((after[n] - before[n]).abs().max()) for n in before},
        # leaf parameters only: a sharded table is exposed as views of the fused FBGEMM weights,
        # which no optimizer steps (the teachers' fused optimisers are dropped) and whose
        # backward never runs (teachers run under no_grad; outputs compared above)
        "names": [n for t in committee.teachers for n, p in t.named_parameters() if p.is_leaf and p.requires_grad],
    }

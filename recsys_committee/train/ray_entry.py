"""Ray Train entry point: the same ``train`` / ``distill`` runs, on N workers.

Why Ray Train's ``TorchTrainer``: it starts the workers (on one machine or a cluster), builds the
process group (gloo on CPU, nccl on GPU), restarts the worker group from the last reported
checkpoint when a worker dies (``FailureConfig(max_failures)``), and keeps the checkpoints in
``storage_path``. Inside each worker the code is the single-process run with a distributed
``DistContext``: TorchRec shards the tables (DMP), the rows are split across workers, AUC is
computed over the gathered predictions, DCP checkpoints are reported with
``ray.train.report(..., checkpoint=...)`` and resumed from ``ray.train.get_checkpoint()``.
The domain is named, not imported, here (``domain="package.module:name"``): each worker imports
that module, which registers the domain, so this core module knows no domain and the heavy
domain imports (TorchRec loads FBGEMM) happen in the workers, not in the driver.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
import signal
import time
from pathlib import Path
from typing import Any, Optional

from recsys_committee.train.config import RunConfig, from_dict

# The workers' environment for a local Ray instance: quiet FBGEMM logs, no Hugging Face downloads.
# Gloo's interface is not set here: the driver's GLOO_SOCKET_IFNAME (`lo` on a laptop or in a test,
# so gloo does not listen on a real interface) is passed through, see `_passthrough_env`.
WORKER_ENV = {"TORCH_CPP_LOG_LEVEL": "ERROR", "HF_HUB_OFFLINE": "1"}


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Runs in every Ray worker. ``config``: {"command": "train"|"distill", "domain":
    "module:name", "run": RunConfig as a dict, "out": output folder (shared by the workers)}."""
    import ray.train
    import ray.train.torch

    from recsys_committee.train.distributed import DistContext
    from recsys_committee.train.distributed import Launch

    if os.path.isdir(config.get("cwd", "")):
        os.chdir(config["cwd"])  # relative paths in the config (data/, runs/teachers) mean the driver's
    cfg = from_dict(RunConfig, config["run"])
    out = Path(config["out"])
    ctx = DistContext.from_process_group(ray.train.torch.get_device() if cfg.dist.use_gpu else None)
    checkpoint = ray.train.get_checkpoint()
    resumed = checkpoint is not None

    def report(path: Path, state: Any) -> None:
        from ray.train import Checkpoint

        metrics = {"step": state.step, "epoch": state.epoch, "best_val_auc": state.best_auc if state.best_epoch >= 0 else None}
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(str(path)) if ctx.is_main else None)

    def fault_drill(state: Any) -> None:
        if not resumed and cfg.dist.kill_rank == ctx.rank and state.step == cfg.dist.kill_at_step:
            # Ray's controller collects reports by polling the workers: a crash within a poll
            # interval of the last report can lose that checkpoint (the run then restarts from the
            # one before). Wait out a few polls so the drill tests resuming, not that race.
            time.sleep(max(1.0, 3 * _controller_poll_interval_s()))
            os.kill(os.getpid(), signal.SIGKILL)

    run = _runner(config["command"], config["domain"])
    if checkpoint is None:
        run(cfg, out, launch=Launch(ctx, report=report, on_step=fault_drill, out_prepared=True))
        return
    with checkpoint.as_directory() as restore_dir:  # a restarted worker group: resumes into its own OUT
        run(cfg, out, launch=Launch(ctx, restore_from=restore_dir, report=report, on_step=fault_drill, out_prepared=True))


def _controller_poll_interval_s() -> float:
    """How often Ray Train's controller polls the workers (its health-check interval, which a
    deployment may set through the environment)."""
    from ray.train.v2._internal.constants import DEFAULT_HEALTH_CHECK_INTERVAL_S, HEALTH_CHECK_INTERVAL_S_ENV_VAR

    return float(os.environ.get(HEALTH_CHECK_INTERVAL_S_ENV_VAR, DEFAULT_HEALTH_CHECK_INTERVAL_S))


def _runner(command: str, domain: str):
    """The runner's ``command`` bound to ``domain`` ("module:name"; importing the module
    registers the domain)."""
    from recsys_committee.domain import DOMAINS
    from recsys_committee.train import runner

    runs = {"train": runner.run_train, "distill": runner.run_distill}
    if command not in runs:
        raise ValueError(f"unknown command '{command}' for Ray Train; expected 'train' or 'distill'")
    module, _, name = domain.partition(":")
    importlib.import_module(module)
    return functools.partial(runs[command], DOMAINS.get(name))


def run_with_ray(command: str, cfg: RunConfig, out: Path, domain: str, name: Optional[str] = None, overwrite: bool = False) -> dict[str, Any]:
    """Start the ``TorchTrainer`` (connecting to a running cluster if ``RAY_ADDRESS`` is set or
    ``ray start`` ran, else a local one) and return rank 0's metrics.json. ``domain``:
    "module:name" of the registered domain the workers run (e.g. ``recsys_committee.rec_domain:rec``).

    OUT is checked here, once, before any worker starts: a non-empty OUT is refused unless
    ``overwrite``, which removes the previous run's files first (its ``OUT/ray`` storage
    included: Ray Train would resume that run's last checkpoint). Workers only write into it
    (a worker group restarted after a failure resumes into the same OUT)."""
    import json

    from recsys_committee.train.out_dir import check_out, clear_run

    out = out.resolve()
    check_out(out, overwrite)  # before Ray starts: a refused OUT costs nothing

    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig as RayRunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    if overwrite and out.is_dir():
        clear_run(out)
    out.mkdir(parents=True, exist_ok=True)
    storage = Path(cfg.dist.storage_path or out / "ray").resolve()
    ensure_ray()
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"command": command, "domain": domain, "run": dataclasses.asdict(cfg), "out": str(out), "cwd": os.getcwd()},
        torch_config=TorchConfig(backend="nccl" if cfg.dist.use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=cfg.dist.num_workers, use_gpu=cfg.dist.use_gpu, resources_per_worker={"CPU": cfg.dist.cpus_per_worker}
        ),
        run_config=RayRunConfig(
            name=name or out.name,
            storage_path=str(storage),
            failure_config=FailureConfig(max_failures=cfg.dist.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    return json.loads((out / "metrics.json").read_text())


def ensure_ray() -> None:
    """Join the cluster of ``ray job submit`` / RAY_ADDRESS, else start a local Ray on loopback."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS") or os.environ.get("RAY_JOB_ID"):
        ray.init()  # inside `ray job submit`: the job's runtime env (working dir, env vars) applies
        return
    # The dashboard stays on (on loopback): Ray serves its State API from the dashboard
    # process, and with include_dashboard=False it loads only UsageStatsHead there
    # (ray/_private/services.py, start_api_server). Ray Train 2.60's detached
    # PlacementGroupCleaner asks that State API every second whether the controller is
    # alive (train/v2/.../placement_group_cleaner.py); without it every check failed with a
    # "Failed to query Ray Train Controller actor state" warning (dozens per run) and the
    # cleaner could never free a dead controller's placement group.
    ray.init(
        runtime_env={"env_vars": {**WORKER_ENV, **_passthrough_env()}},
        include_dashboard=True,
        dashboard_host="127.0.0.1",
    )


def _passthrough_env() -> dict[str, str]:
    """Settings the driver has that the workers need too (loopback gloo, thread counts)."""
    keys = ("GLOO_SOCKET_IFNAME", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    return {k: os.environ[k] for k in keys if k in os.environ}

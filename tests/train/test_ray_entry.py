"""Ray Train for real: TorchTrainer with two CPU workers (gloo on loopback), a worker killed
mid-run and the run resumed from the last reported DCP checkpoint, on in-memory data through
`ray job submit` against a local `ray start --head` cluster, and on a prepared (streamed) dataset
against the unbroken run."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recsys_committee.train.config import load_config
from recsys_committee.metrics.binary import auc
from recsys_committee.rec_domain import load_data, load_trained_model, predict

ROOT = Path(__file__).resolve().parents[2]
# the job's environment: the shared local Ray's (tests/conftest.py RAY_TEST_ENV), written out for the CLI
LOOPBACK_ENV = {"GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1", "TORCH_CPP_LOG_LEVEL": "ERROR", "HF_HUB_OFFLINE": "1",
                "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0", "RAY_TRAIN_METRICS_ENABLED": "0",
                "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25"}
SMALL = ["train.progress=false", "train.batch_size=256", "train.max_steps_per_epoch=8", "train.epochs=2", "data.max_rows=20000"]


@pytest.fixture(scope="module")
def teacher_dir(small_experts):
    return small_experts


def test_a_killed_worker_streaming_a_prepared_dataset_resumes_exactly(local_ray, teacher_dir, real_data_dir, tmp_path):
    """The same drill on a prepared (streamed) dataset, against the unbroken run: the same steps,
    the same teacher-forward counters and the same test AUC. The kill comes after the epoch-end
    checkpoint (step 8 of 8 per epoch): the resumed epoch 1 must rebuild each rank's own order,
    and a streamed split leaves each rank's shuffling generator in a different state."""
    from recsys_committee.data.prepared.build import PrepareOptions, prepare
    from recsys_committee.data.logs.spec import load_spec
    from recsys_committee.rec_domain import run_with_ray

    spec = load_spec(ROOT / "configs/data/ml-100k.yaml")
    spec.max_rows = 20_000  # the rows the teachers were trained on
    prepare(spec, tmp_path / "ds", PrepareOptions(bucket_rows=8_000, row_group_rows=512), log=lambda _: None)
    base = SMALL[:4] + [f"data.spec={tmp_path / 'ds'}", f"teacher_dir={teacher_dir}", "model.params.hidden=[64,32]", "train.checkpoint_every=4", "dist.num_workers=2",
            "committee.gate_config.warmup_steps=2"]
    unbroken = run_with_ray("distill", load_config(ROOT / "configs/rec/diverse_distill.yaml", base), tmp_path / "unbroken")
    drill = ["dist.kill_rank=1", "dist.kill_at_step=10", "dist.max_failures=1"]
    killed = run_with_ray("distill", load_config(ROOT / "configs/rec/diverse_distill.yaml", base + drill), tmp_path / "killed")
    assert [h["step"] for h in unbroken["history"]] == [8, 16]  # so step 8 is epoch 0's end
    assert killed["resumed_from_step"] == 8 and killed["steps"] == unbroken["steps"] == 16
    assert killed["teacher_forwards"] == unbroken["teacher_forwards"] and killed["teacher_forwards"]["run"] < killed["teacher_forwards"]["dense"]
    assert killed["test"]["auc"] == pytest.approx(unbroken["test"]["auc"], abs=1e-9)
    assert killed["val"]["auc"] == pytest.approx(unbroken["val"]["auc"], abs=1e-9)


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free ports on loopback, none of them a Ray default (52365: the dashboard
    agent's HTTP port; 10001-19999: its client server and worker ports)."""
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in ports and port != 52365 and not 10001 <= port <= 19999:
            ports.append(port)
    return ports


def test_ray_job_submit_distils_on_two_workers_and_survives_a_killed_worker(teacher_dir, real_data_dir, tmp_path):
    """The user's cluster entry point: `ray job submit` of a committee distillation on two workers
    against a local `ray start --head`, with rank 1 killed at step 6: the run restarts from the
    step-4 checkpoint and ends as an unbroken run would. On the labeled rows only: every worker
    featurises the data itself, and the drill with transfer rows is the prepared one above."""
    pytest.importorskip("ray")
    ray_bin = Path(sys.executable).with_name("ray")
    port, dashboard, agent = _free_ports(3)
    # the cluster's processes must find this venv's console scripts (make test does not activate it)
    env = {**os.environ, **LOOPBACK_ENV, "PATH": f"{ray_bin.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    # a throwaway cluster on 127.0.0.1: no token auth (a token left in ~/.ray by an earlier
    # ray.init would otherwise switch the head to token mode while the CLI sends none)
    env["RAY_AUTH_MODE"] = "disabled"
    # and no drain on SIGTERM: `ray start --block` otherwise waits up to 30 s for the node to drain
    # (for Ray Serve's sake) before it stops its processes, idle time this test has nothing to use for
    env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"
    temp = Path("/tmp") / f"ray-job-{port}"  # short: ray's socket paths must fit in 107 bytes
    # the dashboard agent's HTTP port is set too: left to its default (52365) it collided once with
    # a free port drawn for the dashboard ("port ... used by other components")
    start = [str(ray_bin), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", f"--dashboard-port={dashboard}",
             f"--dashboard-agent-listen-port={agent}", "--dashboard-host=127.0.0.1", "--num-cpus=2", "--include-dashboard=true",
             f"--temp-dir={temp}", "--disable-usage-stats"]
    # --block: this head's processes live as long as this one process, and stopping it stops
    # them and nothing else (`ray stop` would stop every Ray instance on the machine, a parallel
    # test run's or another user's too)
    log = tmp_path / "ray-start.log"
    with log.open("w") as sink:
        head = subprocess.Popen([*start, "--block"], env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log.read_text():
            assert head.poll() is None and time.monotonic() < deadline, "ray start --head failed:\n" + log.read_text()[-3000:]
            time.sleep(0.5)
        out = tmp_path / "job"
        submit = [
            str(ray_bin), "job", "submit", "--address", f"http://127.0.0.1:{dashboard}", "--working-dir", str(ROOT),
            "--runtime-env-json", json.dumps({"env_vars": LOOPBACK_ENV}), "--",
            "recsys-committee", "distill", "--config", "configs/rec/diverse_distill.yaml", "--out", str(out), "--num-workers", "2",
            *SMALL, f"data.root={real_data_dir}", "data.transfer_per_row=0", f"teacher_dir={teacher_dir}", "model.params.hidden=[64,32]",
            "train.checkpoint_every=4", "dist.kill_rank=1", "dist.kill_at_step=6", "dist.max_failures=1",
        ]
        job = subprocess.run(submit, env=env, timeout=420, capture_output=True, text=True)
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        assert "succeeded" in (job.stdout + job.stderr).lower()
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["world_size"] == 2
        assert metrics["resumed_from_step"] == 4 and metrics["steps"] == 16  # restarted from step 4, none lost or repeated
        assert metrics["teacher_forwards"]["samples"] == 16 * 256 * 2
        # the test AUC is over ALL rows, gathered in order from both workers, of the best-validation
        # student: one process scoring the exported student.safetensors reproduces it (a mis-ordered
        # gather, a shard missing from the export or the wrong epoch's weights would not)
        cfg = load_config(ROOT / "configs/rec/diverse_distill.yaml", [*SMALL, f"data.root={real_data_dir}", "data.transfer_per_row=0"])
        data = load_data(cfg.data)
        probs = predict(load_trained_model(out / "student.safetensors").eval(), data.test, 4096)
        # 1e-5, not 1e-6: rows with identical features tie exactly in one batch of 4,096 but may differ by
        # rounding in the workers' batches (FBGEMM's sharded pooling, batch-dependent blocking), and one
        # such pair moves this slice's AUC by 1.0e-6. Each failure named above moves it far more.
        assert auc(probs, data.test.labels) == pytest.approx(metrics["test"]["auc"], abs=1e-5)
        assert list((out / "ray").rglob("checkpoint_*")), "Ray kept no reported checkpoint"
    finally:
        head.terminate()  # ray start --block stops its cluster on SIGTERM
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        shutil.rmtree(temp, ignore_errors=True)

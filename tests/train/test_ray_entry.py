"""Ray Train for real: TorchTrainer with two CPU workers (gloo on loopback). On a prepared
(streamed) dataset a worker killed mid-run and the run resumed from the last reported DCP
checkpoint, against the unbroken run; on in-memory data, `ray job submit` to the tests' local
Ray head."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from local_ray_env import RAY_TEST_ENV  # the job's environment: the shared local Ray's

from recsys_committee.train.config import load_config
from recsys_committee.metrics.binary import auc
from recsys_committee.rec_domain import load_data, load_trained_model, predict

ROOT = Path(__file__).resolve().parents[2]
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


def test_ray_job_submit_distils_on_two_workers(local_ray, teacher_dir, real_data_dir, tmp_path):
    """The user's cluster entry point: `ray job submit` of a committee distillation on two workers,
    through the job API of the tests' local Ray head (its dashboard serves it, as a `ray start
    --head` cluster's does), on in-memory data (every worker featurises the rows itself) and the
    labeled rows only. The killed-worker drill is the prepared one above (Ray's restart and the
    resume from the last reported checkpoint are the same code on either data path), and an
    in-memory run resumed exactly is tests/train/test_distributed.py's two-process check."""
    ray_bin = Path(sys.executable).with_name("ray")
    dashboard = local_ray._private.worker.get_dashboard_url()
    assert dashboard, "the local Ray runs without its dashboard: no job API to submit to"
    # the CLI talks to the head as the tests' Ray does (RAY_TEST_ENV: loopback, no token auth)
    env = {**os.environ, **RAY_TEST_ENV}
    env.pop("RAY_ADDRESS", None)
    out = tmp_path / "job"
    submit = [
        str(ray_bin), "job", "submit", "--address", f"http://{dashboard}", "--working-dir", str(ROOT),
        "--runtime-env-json", json.dumps({"env_vars": RAY_TEST_ENV}), "--",
        "recsys-committee", "distill", "--config", "configs/rec/diverse_distill.yaml", "--out", str(out), "--num-workers", "2",
        *SMALL, f"data.root={real_data_dir}", "data.transfer_per_row=0", f"teacher_dir={teacher_dir}", "model.params.hidden=[64,32]",
        "train.checkpoint_every=4", "train.epochs=1",
    ]
    job = subprocess.run(submit, env=env, timeout=420, capture_output=True, text=True)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert "succeeded" in (job.stdout + job.stderr).lower()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert metrics["resumed_from_step"] is None and metrics["steps"] == 8
    assert metrics["teacher_forwards"]["samples"] == 8 * 256 * 2
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

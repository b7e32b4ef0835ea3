"""Distributed code tested for real: two gloo processes on CPU (DMP sharding, gathered AUC, DCP
checkpoints resumed at another world size, corrupt checkpoints refused)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from recsys_committee.metrics.binary import auc
from recsys_committee.rec_domain import predict
from recsys_committee.rec_domain import load_trained_model
from recsys_committee.train.checkpoint import load_checkpoint
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from local_group import run_local  # noqa: E402  (benchmarks/: also what the scaling benchmark runs ranks with)
import dist_workers  # noqa: E402  (tests/train is on sys.path under pytest; spawned ranks inherit it)

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
SMALL = ["train.progress=false", "train.batch_size=256", "train.max_steps_per_epoch=6", "train.epochs=2"]


SHARDING_TYPES = ["table_wise", "row_wise", "column_wise"]


@pytest.fixture(scope="module")
def two_rank_checks(teacher_dir, real_data_dir, tmp_path_factory):
    """The two-rank checks that train nothing to keep, on ONE pair of gloo ranks, one after the
    other (spawning the ranks and importing TorchRec in them is most of a small check's time):
    every sharding type's sharded-vs-plain check, the sharded teachers' check, and the student
    trained with its input distribution issued ahead and inline. {check: [rank 0's, rank 1's]}."""
    root = tmp_path_factory.mktemp("two_rank")
    tiny = shutil.copytree(FIXTURES / "ml-tiny", root / "ml-tiny")
    (root / "teachers").mkdir()
    train = SMALL + [f"data.root={real_data_dir}", "data.max_rows=20000", "model.params.hidden=[64,32]"]
    calls = {**{t: (dist_workers.sharded_vs_plain, str(tiny), t) for t in SHARDING_TYPES},
             "teachers": (dist_workers.sharded_teachers_stay_frozen, str(teacher_dir), str(real_data_dir), str(root / "teachers")),
             "ahead": (dist_workers.train_run, train, str(root / "ahead")),
             "inline": (dist_workers.train_run, train + ["train.overlap_input_dist=false"], str(root / "inline"))}
    per_rank = run_local(dist_workers.in_sequence, 2, list(calls.values()))
    return {name: [rank[i] for rank in per_rank] for i, name in enumerate(calls)} | {"root": root}


@pytest.fixture(scope="module")
def sharded_vs_plain(two_rank_checks):
    """{sharding type: [rank 0's result, rank 1's]}."""
    return {t: two_rank_checks[t] for t in SHARDING_TYPES}


@pytest.mark.parametrize("sharding_type", SHARDING_TYPES)
def test_sharded_student_matches_unsharded(sharded_vs_plain, sharding_type):
    for rank, r in enumerate(sharded_vs_plain[sharding_type]):
        where = f"{sharding_type}, rank {rank}"
        assert r["forward_max_diff"] < 1e-5, where
        assert r["n_dense_grads"] > 0 and r["dense_grads_equal"], where
        # the fused table update equals plain SGD on the global-mean loss's gradient
        assert r["after_update_max_diff"][1] < 1e-5, where
        types = {ps.sharding_type for module_plan in r["plan"].values() for ps in module_plan.values()}
        assert types == {sharding_type}, where


@pytest.fixture(scope="module")
def teacher_dir(small_experts):
    return small_experts


def _overrides(teacher_dir, real_data_dir, *extra):
    return SMALL + [
        f"teacher_dir={teacher_dir}", f"data.root={real_data_dir}", "data.max_rows=20000", "model.params.hidden=[64,32]",
        "train.checkpoint_every=3", "committee.gate_config.warmup_steps=0", *extra,
    ]


@pytest.fixture(scope="module")
def two_rank_distill(teacher_dir, real_data_dir, tmp_path_factory):
    """One two-rank distillation (results per rank, its OUT): resumed below, and its checkpoints
    are the good ones the corrupt-checkpoint test breaks copies of."""
    out = tmp_path_factory.mktemp("distill") / "two"
    return run_local(dist_workers.distill_run, 2, _overrides(teacher_dir, real_data_dir), str(out)), out


def test_two_process_distill_resumes_at_world_size_one(two_rank_distill, teacher_dir, real_data_dir, ml_slice, tmp_path):
    """2 ranks: gated routing with padded sub-batches, AUC over gathered predictions, the exported
    student.safetensors; then the step-9 checkpoint (2 ranks) resumed by 2 and by 1 process, finishing the run."""
    overrides = _overrides(teacher_dir, real_data_dir)
    two, two_out = two_rank_distill
    assert two[0]["test"]["auc"] == two[1]["test"]["auc"]  # one AUC over all rows, on every rank
    assert two[0]["world_size"] == 2 and two[0]["steps"] == 12
    f = two[0]["teacher_forwards"]
    assert f["samples"] == 12 * 256 * 2 and f["run"] < f["dense"]  # routed: counts summed over ranks
    student = load_trained_model(two_out / "student.safetensors")
    assert sum(p.numel() for p in student.parameters()) == two[0]["student_params"]
    # The gathered AUC is that of every test row in its place: one process scoring the exported
    # student gets the same number. (12 steps teach the student little, so a threshold on the
    # AUC itself would not catch predictions gathered out of order; this does.)
    probs = predict(student, ml_slice.test, 4096)
    # 1e-5, not 1e-6: rows with identical features tie exactly in one batch of 4,096 but may differ by
    # rounding in the ranks' smaller batches (FBGEMM's sharded pooling, batch-dependent blocking), and
    # one such pair moves this slice's AUC by 1.0e-6. A mis-ordered gather moves it by far more.
    assert auc(probs, ml_slice.test.labels) == pytest.approx(two[0]["test"]["auc"], abs=1e-5)
    assert auc(probs[torch.randperm(len(probs), generator=torch.Generator().manual_seed(0))], ml_slice.test.labels) != pytest.approx(two[0]["test"]["auc"], abs=1e-3)
    assert not any(k.startswith(("qa", "gate", "teachers")) for k in load_checkpoint(two_out / "student.safetensors")["state_dict"])

    ckpts = sorted((two_out / "checkpoints").glob("step-*"))
    assert [c.name for c in ckpts] == ["step-00000009", "step-00000012"]  # the last two kept
    again = run_local(dist_workers.distill_run, 2, overrides, str(tmp_path / "again"), str(ckpts[0]))[0]
    assert again["resumed_from_step"] == 9 and again["steps"] == 12
    assert again["test"]["auc"] == two[0]["test"]["auc"]  # resumed mid-epoch = unbroken, exactly
    assert again["teacher_forwards"] == two[0]["teacher_forwards"]  # counters carried by the checkpoint
    one = run_local(dist_workers.distill_run, 1, overrides, str(tmp_path / "one"), str(ckpts[0]))[0]
    assert one["resumed_from_step"] == 9 and one["steps"] == 12  # no step lost or repeated
    assert one["world_size"] == 1 and 0.0 < one["test"]["auc"] < 1.0
    assert one["teacher_forwards"]["samples"] == 9 * 256 * 2 + 3 * 256  # both old ranks' counts + its own
    assert [h["step"] for h in one["history"]] == [6, 12]  # epoch 0's record came back with the checkpoint


def test_input_distribution_issued_ahead_changes_no_number(two_rank_checks):
    """2 ranks: with ``train.overlap_input_dist`` every step but an epoch's first takes its sparse
    input distributed during the step before (as TorchRec's TrainPipelineSparseDist orders it), and
    the trained student is, bit for bit, the one trained with the inline input distribution."""
    # both runs on one pair of gloo ranks, one after the other (each builds its own model, data and optimisers)
    ahead, inline, root = two_rank_checks["ahead"], two_rank_checks["inline"], two_rank_checks["root"]
    assert [r["prefetched_steps"] for r in ahead] == [2 * (6 - 1)] * 2  # 2 epochs of 6 steps, each rank
    assert [r["prefetched_steps"] for r in inline] == [0, 0]
    assert ahead[0]["steps"] == inline[0]["steps"] == 12
    assert [h["train_loss"] for h in ahead[0]["history"]] == [h["train_loss"] for h in inline[0]["history"]]
    assert ahead[0]["test"] == inline[0]["test"]
    a = load_checkpoint(root / "ahead" / "model.safetensors")["state_dict"]
    b = load_checkpoint(root / "inline" / "model.safetensors")["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_corrupt_or_incomplete_checkpoint_is_refused(two_rank_distill, teacher_dir, real_data_dir, tmp_path):
    overrides = _overrides(teacher_dir, real_data_dir)
    good = sorted((two_rank_distill[1] / "checkpoints").glob("step-*"))[-1]
    incomplete = shutil.copytree(good, tmp_path / "incomplete")
    (incomplete / "COMPLETE").unlink()
    truncated = shutil.copytree(good, tmp_path / "truncated")
    shard = next(truncated.glob("*.distcp"))
    shard.write_bytes(shard.read_bytes()[:100])
    foreign = shutil.copytree(good, tmp_path / "foreign")
    (foreign / "COMPLETE").write_text(json.dumps({"format": "something-else/9"}))
    messages = run_local(dist_workers.restore_errors, 1, overrides, str(tmp_path / "again"), [str(incomplete), str(truncated), str(foreign)])[0]
    assert "incomplete" in messages[0] and str(incomplete) in messages[0]
    assert "corrupt" in messages[1] and str(truncated) in messages[1]
    assert "not a diverse-distill-dcp/1 checkpoint" in messages[2]
    assert good.is_dir() and (good / "COMPLETE").is_file()  # the good checkpoint is untouched


def test_sharded_teachers_match_their_files_and_stay_frozen(two_rank_checks):
    """Sharded teachers give the outputs of the trained models they were loaded from (DMP's
    fresh table init is overwritten), and training steps never change them."""
    for r in two_rank_checks["teachers"]:
        assert max(r["sharded_equals_plain"].values()) < 1e-5
        assert max(r["after_minus_before"].values()) == 0.0
        assert r["names"] == []

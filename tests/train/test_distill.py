"""End-to-end distillation on a real-data slice with real (briefly trained) TorchRec teachers."""

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from recsys_committee.committee import CommitteeConfigError
from recsys_committee.registry import UnknownNameError
from recsys_committee.train.config import load_config
from recsys_committee.metrics.binary import auc
from recsys_committee.rec_domain import load_trained_model, predict, run_distill
from recsys_committee.train.checkpoint import load_checkpoint
from recsys_committee.train.runner import build_teachers

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["train.progress=false", "train.batch_size=256", "train.max_steps_per_epoch=8", "train.epochs=1"]


@pytest.fixture(scope="module")
def teacher_dir(small_experts):
    return small_experts


def _distill_cfg(config, teacher_dir, *extra):
    return load_config(ROOT / "configs/rec" / config, SMALL + [f"teacher_dir={teacher_dir}", "model.params.hidden=[64,32]", *extra])


# the teachers each method distils from (distill_base.yaml's committee: dlrm and two din_dcn)
TEACHERS_USED = {"diverse_distill.yaml": ("dlrm", "din_dcn", "din_dcn_2"), "camkd.yaml": ("dlrm", "din_dcn", "din_dcn_2"), "feature_kd_dlrm.yaml": ("dlrm",)}


def _pairwise_auc(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """P(a positive outranks a negative), ties counting half: AUC by its definition."""
    pos, neg = probs[labels == 1].double(), probs[labels == 0].double()
    return float(((pos[:, None] > neg[None, :]).double() + 0.5 * (pos[:, None] == neg[None, :]).double()).mean())


@pytest.mark.parametrize("config", sorted(TEACHERS_USED))
def test_distill_writes_contract_and_keeps_teachers_frozen(ml_slice, teacher_dir, tmp_path, config):
    before = {n: load_checkpoint(teacher_dir / n / "model.safetensors")["state_dict"] for n in ("expert_dlrm", "expert_din_dcn", "expert_din_dcn_2")}
    cfg = _distill_cfg(config, teacher_dir, "committee.gate_config.warmup_steps=3")
    metrics = run_distill(cfg, tmp_path, data=ml_slice)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["method"] == cfg.committee["method"]
    # the parameter counts are the exported student's and those of the teachers the method uses,
    # each counted on its own checkpoint
    student = load_trained_model(tmp_path / "student.safetensors")
    assert on_disk["student_params"] == metrics["student_params"] == sum(p.numel() for p in student.parameters())
    sizes = {n: sum(p.numel() for p in load_trained_model(teacher_dir / f"expert_{n}" / "model.safetensors").parameters()) for n in ("dlrm", "din_dcn", "din_dcn_2")}
    assert on_disk["teacher_params"] == {n: sizes[n] for n in TEACHERS_USED[config]}
    # exact forward counts: 8 steps of 256 rows; the dense methods run every teacher on every row,
    # DiverseDistill's random gate (exact budget) skips ceil(0.3 * 256 K) pairs a step after the 3 warm-up steps
    k, f = len(TEACHERS_USED[config]), on_disk["teacher_forwards"]
    assert (f["samples"], f["dense"]) == (8 * 256, 8 * 256 * k)
    skipped = math.ceil(0.3 * 256 * k) if config == "diverse_distill.yaml" else 0
    assert f["run"] == f["dense"] - 5 * skipped == sum(f["per_teacher"].values())
    assert set(f["per_teacher"]) == set(TEACHERS_USED[config])
    # the exported student rebuilds on its own (a bare student, loaded strictly: a committee key
    # would fail the load) and is the best-validation student: scoring the test split with it
    # reproduces the run's test metrics, recomputed here from their definitions
    probs = predict(student, ml_slice.test, 4096)
    labels = ml_slice.test.labels
    p, y = probs.double().clamp(1e-12, 1 - 1e-12), labels.double()
    test = on_disk["test"]
    assert test == metrics["test"] and test["n"] == len(ml_slice.test) == labels.numel()
    assert test["auc"] == pytest.approx(_pairwise_auc(probs, labels), abs=1e-5)  # the metric kernel breaks ties by order, not by half
    assert test["auc"] == pytest.approx(auc(probs, labels), abs=1e-6)
    assert test["logloss"] == pytest.approx(float(-(y * p.log() + (1 - y) * (1 - p).log()).mean()), abs=1e-6)
    # teachers on disk untouched (they are loaded, frozen, never saved)
    for n, sd in before.items():
        after = load_checkpoint(teacher_dir / n / "model.safetensors")["state_dict"]
        assert all(torch.equal(sd[k], after[k]) for k in sd)


def test_importance_gated_run_skips_forwards_after_warmup(ml_slice, teacher_dir, tmp_path):
    cfg = _distill_cfg("diverse_distill_importance.yaml", teacher_dir, "committee.gate_config.warmup_steps=0", "committee.gate_config.rho=1.0", "committee.gate_config.eps=0.0")
    f = run_distill(cfg, tmp_path, data=ml_slice)["teacher_forwards"]
    assert f["run"] == f["samples"]  # rho = 1: exactly one teacher (the arg-max) per sample
    assert f["dense"] == len(cfg.teachers) * f["samples"]


def test_unknown_teacher_kind_lists_registered():
    with pytest.raises(UnknownNameError, match="unknown teacher 'rec_modle'.*Did you mean 'rec_model'"):
        build_teachers([{"name": "x", "kind": "rec_modle", "checkpoint": "nope.pt"}])


def test_build_teachers_hands_every_builder_the_run_context():
    """``train.progress: false`` must also silence a teacher's cache-filling bar: the context
    (data, progress) reaches every builder explicitly."""
    from recsys_committee.committee.teacher import TEACHERS, TeacherContext, register_teacher

    if "context_probe_teacher" not in TEACHERS:
        register_teacher("context_probe_teacher")(lambda *, name, context: SimpleNamespace(name=name, context=context))
    quiet = build_teachers([{"name": "quiet", "kind": "context_probe_teacher"}], context=TeacherContext(data="rows", progress=False))
    default = build_teachers([{"name": "default", "kind": "context_probe_teacher"}])
    assert [(t.context.data, t.context.progress) for t in quiet + default] == [("rows", False), (None, True)]


def test_build_teachers_reads_logit_target_for_every_kind():
    """``logit_target`` is the committee's option, not a builder's: every kind takes it, and a
    value that is not a boolean is one clear config error naming the teacher."""
    from recsys_committee.committee.teacher import TEACHERS, register_teacher
    from recsys_committee.errors import ConfigError

    if "logit_target_probe_teacher" not in TEACHERS:
        register_teacher("logit_target_probe_teacher")(lambda *, name, context: SimpleNamespace(name=name, logit_target=True))
    [kept, dropped] = build_teachers([{"name": "kept", "kind": "logit_target_probe_teacher"},
                                      {"name": "dropped", "kind": "logit_target_probe_teacher", "logit_target": False}])
    assert (kept.logit_target, dropped.logit_target) == (True, False)
    with pytest.raises(ConfigError, match="teachers\\[0\\] \\('x'\\): logit_target must be true or false, got 'no'"):
        build_teachers([{"name": "x", "kind": "logit_target_probe_teacher", "logit_target": "no"}])


def test_single_teacher_baseline_names_missing_teacher(ml_slice, teacher_dir, tmp_path):
    cfg = _distill_cfg("logit_kd_dlrm.yaml", teacher_dir, "committee.teacher=dlmr")
    with pytest.raises((CommitteeConfigError, UnknownNameError), match="dlmr"):
        run_distill(cfg, tmp_path, data=ml_slice)


class _Loaded(Exception):
    """Raised by the recording load_data: the run asked for its data, nothing more is needed."""


@pytest.mark.parametrize("command, config, overrides, wanted", [
    ("train", "student.yaml", [], False),
    ("distill", "no_kd.yaml", [], False),
    ("distill", "diverse_distill.yaml", ["committee.transfer=false"], False),
    ("distill", "diverse_distill.yaml", [], True),
])
def test_transfer_rows_are_built_only_for_a_run_that_reads_them(command, config, overrides, wanted, monkeypatch, tmp_path):
    """Featurising the sampled pairs costs more than the labeled rows on MovieLens-100K: a plain
    training run, the no-KD student and a distillation without them must not ask for them."""
    from recsys_committee.rec_domain import REC, run_train

    asked = []

    def load_data(self, cfg, transfer=True):
        asked.append(transfer)
        raise _Loaded

    monkeypatch.setattr(type(REC), "load_data", load_data)
    run = run_train if command == "train" else run_distill
    with pytest.raises(_Loaded):
        run(load_config(ROOT / "configs/rec" / config, ["train.progress=false", *overrides]), tmp_path / "out")
    assert asked == [wanted]

"""End to end on a real Fashion-MNIST slice: teachers trained, the committee distilled (gated,
cached foundation teacher and live experts), the exported student reloaded without committee code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from recsys_committee.committee import CommitteeConfigError
from recsys_committee.registry import UnknownNameError
from recsys_committee.train.checkpoint import load_checkpoint
from recsys_committee.train.config import ConfigError, load_config
from vision_committee.checkpoint import load_vision_model
from vision_committee.data import VisionData, VisionSplit
from recsys_committee.train.rows import predict_logits
from vision_committee.domain import run_vision_distill, run_vision_train
from vision_committee.teachers import vision_model_teacher
from recsys_committee.committee.teacher import TeacherContext

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs/vision"
FAST = ["train.epochs=1", "train.progress=false", "train.batch_size=64", "train.eval_batch_size=256"]
TINY = {"expert_wide": ["model.params.widths=[16,32,64]"], "expert_deep": ["model.params.widths=[8,16,32]"], "foundation": []}


def tiny_everything(data: VisionData) -> VisionData:
    """The slice renumbered 0..N-1 over its own images, so the foundation cache (built over
    ``all_images()``) covers 1,024 images, not 70,000."""
    parts, start = [], 0
    for split in (data.train, data.val, data.test):
        parts.append(VisionSplit(split.images, split.labels, torch.arange(start, start + len(split))))
        start += len(split)
    everything = VisionSplit(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]), torch.arange(start))
    return VisionData(*parts, everything=everything)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, fashion_slice, imagenet_weights) -> Path:  # the foundation starts from the ImageNet weights
    out = tmp_path_factory.mktemp("vision_teachers")
    for name, extra in TINY.items():
        run_vision_train(load_config(CONFIGS / f"{name}.yaml", FAST + extra), out / name, data=fashion_slice)
    return out


def test_teacher_runs_write_the_metrics_contract(teacher_dir: Path, fashion_slice) -> None:
    """Each teacher's metrics.json describes the model file next to it: its architecture and size,
    and test top-1 and log loss that its predictions reproduce (one epoch: the best is epoch 0,
    whose validation top-1 is the one reported)."""
    part = fashion_slice.test
    for name, model_name in (("foundation", "mobilenet_v2"), ("expert_wide", "resnet_cnn"), ("expert_deep", "resnet_cnn")):
        m = json.loads((teacher_dir / name / "metrics.json").read_text())
        model = load_vision_model(teacher_dir / name / "model.safetensors")
        assert m["model"] == model_name and m["params"] == sum(p.numel() for p in model.parameters()), name
        logits = predict_logits(model, part, 256)  # the runs' eval batch size
        assert (m["test"]["rows"], m["val"]["rows"]) == (len(part), len(fashion_slice.val)), name
        assert m["test"]["top1"] == pytest.approx(float((logits.argmax(1) == part.labels).float().mean()), abs=1e-6), name
        assert m["test"]["logloss"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, part.labels)), abs=1e-4), name
        assert [h["epoch"] for h in m["history"]] == [0] and m["best_epoch"] == 0 and m["history"][0]["val_top1"] == m["val"]["top1"], name
        assert (teacher_dir / name / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_gated_distillation_on_a_slice(tmp_path: Path, teacher_dir: Path, fashion_slice) -> None:
    data = tiny_everything(fashion_slice)
    cfg = load_config(CONFIGS / "diverse_distill.yaml", FAST + [f"teacher_dir={teacher_dir}", "committee.gate_config.warmup_steps=2"])
    m = run_vision_distill(cfg, tmp_path / "dd", data=data)
    f = m["teacher_forwards"]
    assert f["samples"] == len(data.train) and f["dense"] == 3 * len(data.train)
    # the random gate (exact budget) skips ceil(0.3 * 64 * 3) = 58 of each step's 192 pairs after
    # the 2 warm-up steps: 8 steps of 64 rows
    assert len(data.train) == 8 * 64 and f["run"] == f["dense"] - 6 * 58 == sum(f["per_teacher"].values())
    assert set(f["per_teacher"]) == {"foundation", "expert_wide", "expert_deep"}
    assert m["student_params"] == 965_930 and "top1" in m["test"] and "top1" in m["val"]
    # the exported student needs no committee code and gives the evaluation's predictions
    student = load_vision_model(tmp_path / "dd" / "student.safetensors")
    state = load_checkpoint(tmp_path / "dd" / "student.safetensors")["state_dict"]
    assert not any(k.startswith(("qa.", "gate.", "losses.", "teachers.")) for k in state)
    logits = predict_logits(student, data.test, 256)
    assert abs(float((logits.argmax(1) == data.test.labels).float().mean()) - m["test"]["top1"]) < 1e-6


def test_cached_foundation_teacher_matches_the_live_one(tmp_path: Path, teacher_dir: Path, fashion_slice) -> None:
    data = tiny_everything(fashion_slice)
    spec = dict(name="foundation", checkpoint=str(teacher_dir / "foundation" / "model.safetensors"), tap="net.features.17")
    live = vision_model_teacher(**spec, context=TeacherContext())
    cached = vision_model_teacher(**spec, cached=True, context=TeacherContext(data))
    batch = data.everything.batch(torch.tensor([3, 7, 1023]))
    a, b = live.run(batch), cached.run(batch)
    assert torch.allclose(a.features, b.features, atol=2e-2) and torch.allclose(a.logits, b.logits, atol=1e-4)
    again = vision_model_teacher(**spec, cached=True, context=TeacherContext(data))  # reopened, not recomputed
    assert torch.equal(again.run(batch).features, b.features)


@pytest.mark.parametrize(
    "override, error, match",
    [
        (["committee.method=logit_kd", "committee.teacher=foundaton"], UnknownNameError, "foundation"),
        (["committee.method=diverse_distil"], UnknownNameError, "diverse_distill"),
        (["teachers=[{name: x, kind: vision_modle, checkpoint: y}]"], UnknownNameError, "vision_model"),
        (["data.dataset=cifar10"], ConfigError, "fashion_mnist"),
        (["committee.answer_mode=reenter"], CommitteeConfigError, "reenter"),
        (['committee.losses=["task","kd","answer_kd"]'], CommitteeConfigError, "set committee.weights.answer_kd"),
        (["committee.loss_options={confidence_kd: {confidence_temperature: 0}}"], CommitteeConfigError, "confidence_temperature must be > 0"),
        (["committee.loss_options={confidence_kd: {confidence_temprature: 0.1}}"], UnknownNameError, "confidence_temperature"),
    ],
)
def test_bad_configs_fail_by_name(tmp_path: Path, teacher_dir: Path, fashion_slice, override, error, match) -> None:
    cfg = load_config(CONFIGS / "diverse_distill.yaml", FAST + [f"teacher_dir={teacher_dir}", *override])
    with pytest.raises(error, match=match):
        run_vision_distill(cfg, tmp_path / "bad", data=tiny_everything(fashion_slice))


def test_cli_reports_a_missing_teacher_checkpoint(tmp_path: Path, fashion_root: Path, capsys) -> None:
    """The data loads first, so this needs Fashion-MNIST: without it the run also exits 2, on the
    data, which is why the message is checked."""
    from vision_committee.cli import main

    capsys.readouterr()
    out = tmp_path / "x"
    code = main(["distill", "--config", str(CONFIGS / "avg_kd.yaml"), "--out", str(out), f"teacher_dir={tmp_path / 'none'}", "train.progress=false",
                 f"data.root={fashion_root}", "data.max_rows=256"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error")]
    missing = tmp_path / "none" / "foundation" / "model.safetensors"  # the first teacher's
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "checkpoint not found" in lines[0] and str(missing) in lines[0], lines[0]
    assert not out.exists()  # a run that fails on its inputs writes nothing

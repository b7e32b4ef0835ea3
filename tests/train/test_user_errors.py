"""Every mistake a user can make gets one line naming the problem and exit code 2, no traceback
(``--debug`` shows it). Each case runs the real command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recsys_committee.cli import main as cli_main
from vision_committee.cli import main as vision_main

ROOT = Path(__file__).resolve().parents[2]
QUICK = ["train.progress=false", "train.batch_size=256", "train.epochs=1", "train.max_steps_per_epoch=2", "model.params.hidden=[16]"]


def run_cli(main, argv, capsys) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


def assert_one_line(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("W1")]  # torch's fx import warning
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_teacher_checkpoint_of_the_wrong_model_kind_names_teacher_and_file(real_data_dir, tmp_path, capsys):
    """A student's model file given as the DLRM expert: its tap 'top' does not exist in a student."""
    from recsys_committee.rec_domain import REC, load_data
    from recsys_committee.train.checkpoint import save_checkpoint
    from recsys_committee.train.config import load_config

    cfg = load_config(ROOT / "configs/rec/student.yaml", [f"data.root={real_data_dir}", "data.max_rows=3000", *QUICK])
    data = load_data(cfg.data)
    student = REC.build_model(cfg, data)
    wrong = tmp_path / "student" / "model.safetensors"
    save_checkpoint(wrong, REC.model_payload(cfg, data, student.state_dict(), 0, {"auc": 0.5}, None))
    teachers = json.dumps([{"name": "dlrm", "kind": "rec_model", "checkpoint": str(wrong), "tap": "top"}])
    code, err = run_cli(cli_main, ["distill", "--config", str(ROOT / "configs/rec/diverse_distill.yaml"), "--out", str(tmp_path / "d"),
                                   f"data.root={real_data_dir}", "data.max_rows=3000", *QUICK, f"teachers={teachers}"], capsys)
    assert_one_line(code, err, "teacher 'dlrm'", str(wrong), "'top'")


def test_nan_loss_names_step_term_and_says_no_checkpoint_yet(real_data_dir, tmp_path, capsys):
    code, err = run_cli(cli_main, ["train", "--config", str(ROOT / "configs/rec/student.yaml"), "--out", str(tmp_path), f"data.root={real_data_dir}",
                                   "data.max_rows=3000", *QUICK, "optim.lr=1e30", "optim.embedding_lr=1e30"], capsys)
    assert_one_line(code, err, "non-finite loss at step", "term 'total'", "no checkpoint was written")


def test_nan_loss_after_an_epoch_names_the_last_good_checkpoint(ml_slice, tmp_path, monkeypatch):
    """The loss turns NaN in epoch 2: the error says where the epoch-0 best model is, and it is intact."""
    from recsys_committee.committee.config import NonFiniteLossError
    from recsys_committee.rec_domain import REC, run_train
    from recsys_committee.train.checkpoint import load_checkpoint
    from recsys_committee.train.config import load_config

    calls = {"n": 0}
    clean = type(REC).task_loss

    def poisoned(self, logits, batch):
        calls["n"] += 1
        loss = clean(self, logits, batch)
        return loss * float("nan") if calls["n"] > 6 else loss  # steps 0-5 fine (2 epochs x 3 steps)

    monkeypatch.setattr(type(REC), "task_loss", poisoned)
    cfg = load_config(ROOT / "configs/rec/student.yaml", [*QUICK, "train.epochs=3", "train.max_steps_per_epoch=3", "train.patience=5"])
    with pytest.raises(NonFiniteLossError) as err:
        run_train(cfg, tmp_path, data=ml_slice)
    assert err.value.step == 6 and str(tmp_path / "model.safetensors") in str(err.value)
    assert load_checkpoint(tmp_path / "model.safetensors")["epoch"] in (0, 1)


def test_a_zero_split_fraction_is_a_config_error(tmp_path, capsys):
    code, err = run_cli(cli_main, ["train", "--config", str(ROOT / "configs/rec/student.yaml"), "--out", str(tmp_path), "data.fractions=[0.9,0.1,0]"], capsys)
    assert_one_line(code, err, "data.fractions", "[0.9, 0.1, 0.0]", "command-line override")


def test_an_empty_validation_split_is_named(real_data_dir, tmp_path, capsys):
    code, err = run_cli(cli_main, ["train", "--config", str(ROOT / "configs/rec/student.yaml"), "--out", str(tmp_path), f"data.root={real_data_dir}",
                                   "data.max_rows=1000", "data.fractions=[0.9995,0.0002,0.0003]", *QUICK], capsys)
    assert_one_line(code, err, "val split is empty")


def test_vision_cli_uses_the_same_error_path(tmp_path, capsys):
    code, err = run_cli(vision_main, ["train", "--config", str(ROOT / "configs/vision/student.yaml"), "--out", str(tmp_path), "epochs=2"], capsys)
    assert_one_line(code, err, "command-line override 'epochs=2'", "'train.epochs'")


def test_debug_shows_the_traceback(tmp_path):
    from recsys_committee.train.config import ConfigError

    with pytest.raises(ConfigError):
        cli_main(["train", "--config", str(ROOT / "configs/rec/student.yaml"), "--out", str(tmp_path), "--debug", "data.fractions=[1,0,0]"])


def test_a_corrupt_teacher_file_is_one_line(real_data_dir, tmp_path, capsys):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"not a model file")
    teachers = json.dumps([{"name": "dlrm", "kind": "rec_model", "checkpoint": str(bad)}])
    code, err = run_cli(cli_main, ["distill", "--config", str(ROOT / "configs/rec/diverse_distill.yaml"), "--out", str(tmp_path / "d"),
                                   f"data.root={real_data_dir}", "data.max_rows=3000", *QUICK, f"teachers={teachers}"], capsys)
    assert_one_line(code, err, str(bad), "corrupt")

"""``--out``: a folder with a run in it is refused (exit 2, nothing touched) unless
``--overwrite``; config.yaml is written only once the run's inputs validated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recsys_committee.cli import main as cli_main
from vision_committee.cli import main as vision_main

ROOT = Path(__file__).resolve().parents[2]
QUICK = ["train.progress=false", "train.batch_size=256", "train.epochs=1", "train.max_steps_per_epoch=2", "model.params.hidden=[16]", "data.max_rows=3000"]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes), and its mtime, to compare after."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def old_run(folder: Path) -> dict[str, bytes]:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("seed: 99\n")
    (folder / "metrics.json").write_text(json.dumps({"old": True}))
    (folder / "model.safetensors").write_bytes(b"old weights")
    (folder / "checkpoints" / "step-00000004").mkdir(parents=True)
    (folder / "checkpoints" / "step-00000004" / "COMPLETE").write_text("{}")
    (folder / "notes.txt").write_text("mine")  # not a run file: --overwrite leaves it
    return snapshot(folder)


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("W1")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("command, config", [("train", "configs/rec/student.yaml"), ("distill", "configs/rec/diverse_distill.yaml")])
def test_a_non_empty_out_is_refused_and_left_untouched(tmp_path, capsys, command, config):
    out = tmp_path / "run"
    before = old_run(out)
    code = cli_main([command, "--config", str(ROOT / config), "--out", str(out), *QUICK])
    line = one_error_line(capsys.readouterr().err)
    assert code == 2 and str(out) in line and "not empty" in line and "--overwrite" in line
    assert snapshot(out) == before  # same files, same bytes, not even rewritten


def test_the_vision_cli_refuses_too(tmp_path, capsys):
    out = tmp_path / "run"
    before = old_run(out)
    code = vision_main(["train", "--config", str(ROOT / "configs/vision/student.yaml"), "--out", str(out), "train.epochs=1"])
    assert code == 2 and "not empty" in one_error_line(capsys.readouterr().err)
    assert snapshot(out) == before
    from vision_committee.cli import build_parser

    assert build_parser().parse_args(["distill", "--config", "x.yaml", "--out", "y", "--overwrite"]).overwrite


def test_an_empty_or_missing_out_is_fine_and_a_file_is_refused(tmp_path):
    from recsys_committee.train.out_dir import OutputExistsError, check_out

    check_out(tmp_path / "missing", overwrite=False)
    (tmp_path / "empty").mkdir()
    check_out(tmp_path / "empty", overwrite=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputExistsError, match="is a file"):
        check_out(tmp_path / "file", overwrite=True)


def test_overwrite_replaces_the_old_run_and_keeps_other_files(real_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    old_run(out)
    code = cli_main(["train", "--config", str(ROOT / "configs/rec/student.yaml"), "--out", str(out), "--overwrite",
                     f"data.root={real_data_dir}", *QUICK])
    assert code == 0, capsys.readouterr().err
    assert "old" not in json.loads((out / "metrics.json").read_text())
    assert "seed: 99" not in (out / "config.yaml").read_text()
    assert not (out / "checkpoints").exists()  # the old run's checkpoints went with it
    assert (out / "notes.txt").read_text() == "mine"
    from recsys_committee.rec_domain import load_trained_model

    load_trained_model(out / "model.safetensors")  # the new weights, not b"old weights"


def test_a_run_that_fails_validation_writes_no_config(real_data_dir, tmp_path, capsys):
    """A bad teacher kind fails after the data loaded: a fresh OUT gets nothing, and with
    --overwrite the old run stays as it was."""
    teachers = json.dumps([{"name": "dlrm", "kind": "rec_modle", "checkpoint": "nope.safetensors"}])
    argv = ["distill", "--config", str(ROOT / "configs/rec/diverse_distill.yaml"), f"data.root={real_data_dir}", *QUICK, f"teachers={teachers}"]
    fresh = tmp_path / "fresh"
    code = cli_main([*argv[:3], "--out", str(fresh), *argv[3:]])
    assert code == 2 and "rec_model" in one_error_line(capsys.readouterr().err)
    assert not (fresh / "config.yaml").exists() and not fresh.exists()
    out = tmp_path / "old"
    before = old_run(out)
    code = cli_main([*argv[:3], "--out", str(out), "--overwrite", *argv[3:]])
    assert code == 2 and "rec_model" in one_error_line(capsys.readouterr().err)
    assert snapshot(out) == before


def test_ray_driver_checks_out_before_starting_ray_and_workers_do_not(tmp_path, monkeypatch):
    import sys

    from recsys_committee.rec_domain import REC
    from recsys_committee.train.config import load_config
    from recsys_committee.train.distributed import Launch
    from recsys_committee.train.out_dir import OutputExistsError
    from recsys_committee.rec_domain import run_with_ray
    from recsys_committee.train.runner import begin_run

    out = tmp_path / "run"
    before = old_run(out)
    cfg = load_config(ROOT / "configs/rec/student.yaml", ["dist.num_workers=2"])
    monkeypatch.setitem(sys.modules, "ray", None)  # importing ray would fail: the check comes first
    with pytest.raises(OutputExistsError, match="not empty"):
        run_with_ray("train", cfg, out)
    assert snapshot(out) == before
    # a worker (the driver prepared OUT; a restarted worker resumes into it) does not refuse it
    begin_run(REC, cfg, out, Launch(out_prepared=True))
    with pytest.raises(OutputExistsError):
        begin_run(REC, cfg, out, Launch())

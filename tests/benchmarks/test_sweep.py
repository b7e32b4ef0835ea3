"""The sweeps (sweep.py, batch_size.py, user_dropout.py): each KD run reads the expert of its own
seed (trained at its own batch size; shared by every value of a student-only setting), and the
report computes the share of the gap logit KD recovers (null when the teacher is not 2 no-KD
seed stds above the no-KD student) from the runs it finds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from batch_size import BATCH_SIZE  # noqa: E402
from sweep import command, run_dir  # noqa: E402
from user_dropout import USER_DROPOUT  # noqa: E402


def _run(folder: Path, seed: int, val: float, test: float) -> None:
    folder.mkdir(parents=True)
    history = [{"epoch": 0, "val_auc": val, "seconds": 3.0}, {"epoch": 1, "val_auc": val - 0.01, "seconds": 5.0}]
    (folder / "metrics.json").write_text(json.dumps({"seed": seed, "best_epoch": 0, "val": {"auc": val}, "test": {"auc": test}, "history": history}))


def test_the_kd_run_reads_the_expert_of_its_own_batch_size_and_seed(tmp_path: Path) -> None:
    line = command(BATCH_SIZE, "logit_kd_din_dcn", 128, 1, tmp_path, "configs/data/ml-100k.yaml", [])
    teachers = json.loads(next(a for a in line if a.startswith("teachers="))[len("teachers="):])
    assert teachers[0]["checkpoint"] == str(tmp_path / "bs128" / "expert_din_dcn-seed1" / "model.safetensors")
    assert "train.batch_size=128" in line and "seed=1" in line and line[1] == "distill"
    expert = command(BATCH_SIZE, "expert_din_dcn", 64, 0, tmp_path, "d.yaml", [])
    assert expert[1] == "train" and "train.batch_size=64" in expert


def test_a_student_only_setting_shares_one_expert_per_seed(tmp_path: Path) -> None:
    line = command(USER_DROPOUT, "logit_kd_din_dcn", 0.5, 2, tmp_path, "d.yaml", [], expert_dir=tmp_path / "experts_here")
    teachers = json.loads(next(a for a in line if a.startswith("teachers="))[len("teachers="):])
    assert teachers[0]["checkpoint"] == str(tmp_path / "experts_here" / "expert_din_dcn-seed2" / "model.safetensors")
    assert "model.params.user_dropout=0.5" in line and str(tmp_path / "ud0_5" / "logit_kd_din_dcn-seed2") in line
    expert = command(USER_DROPOUT, "expert_din_dcn", 0.5, 2, tmp_path, "d.yaml", [])
    assert not any(a.startswith("model.params.user_dropout") for a in expert)  # the expert has no such parameter
    assert run_dir(USER_DROPOUT, tmp_path, "expert_din_dcn", 0.0, 2) == run_dir(USER_DROPOUT, tmp_path, "expert_din_dcn", 1.0, 2)


def test_the_report_computes_the_kd_share_from_finished_runs(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    tests = {  # batch -> model -> per-seed test AUC
        512: {"expert_din_dcn": [0.770, 0.770], "no_kd": [0.750, 0.752], "logit_kd_din_dcn": [0.760, 0.761]},
        64: {"expert_din_dcn": [0.751, 0.751], "no_kd": [0.748, 0.754], "logit_kd_din_dcn": [0.750, 0.752]},
    }
    for batch, models in tests.items():
        for model, values in models.items():
            for seed, test in enumerate(values):
                _run(run_dir(BATCH_SIZE, out, model, batch, seed), seed, 0.73, test)
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "batch_size.py"), "--values", "512", "64", "--seeds", "0", "1",
                           "--out", str(out), "--results", str(tmp_path / "results")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    table = json.loads((tmp_path / "results" / "batch_size_ml-100k.json").read_text())["by_batch_size"]
    assert abs(table["512"]["kd_gap_recovered"] - 0.5) < 1e-9  # (0.7605 - 0.751) / (0.770 - 0.751)
    assert table["64"]["kd_gap_recovered"] is None  # the teacher is 0.0 above no-KD: no gap to recover
    assert table["512"]["no_kd"]["seconds_per_epoch"] == 4.0
    assert (tmp_path / "results" / "batch_size_ml-100k.png").stat().st_size > 0

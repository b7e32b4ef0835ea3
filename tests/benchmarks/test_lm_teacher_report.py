"""lm_teacher_report.py reads the runs it is pointed at: per-seed AUCs, the LM's margin over the
student in standard deviations, gap recovered against the LM, the averaging-vs-single check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(folder: Path, seed: int, val: float, test: float, **extra) -> None:
    folder.mkdir(parents=True)
    metrics = {"seed": seed, "val": {"auc": val, "cold": {"auc": val}}, "test": {"auc": test}, "epoch_seconds": 10.0, "params": 5, **extra}
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_the_report_computes_the_margin_and_reads_the_gaps(tmp_path: Path) -> None:
    for seed, val in enumerate([0.73, 0.74, 0.75]):
        _run(tmp_path / "lm" / f"seed{seed}", seed, val, 0.76)
    for seed, val in enumerate([0.69, 0.70, 0.71]):
        _run(tmp_path / "students" / f"no_kd-seed{seed}", seed, val, 0.71)
    methods = {
        "no_kd": {"test_auc": [0.71, 0.0], "seeds": [0, 1, 2], "forwards_skipped": None, "gap_vs": {"lm": [0.0, 0.0], "best_teacher": [0.0, 0.0]}},
        "logit_kd[lm]": {"test_auc": [0.72, 0.01], "seeds": [0, 1, 2], "forwards_skipped": 0.0, "gap_vs": {"lm": [20.0, 5.0], "best_teacher": [10.0, 2.0]}},
        "avg_kd": {"test_auc": [0.715, 0.01], "seeds": [0, 1, 2], "forwards_skipped": 0.0, "gap_vs": {"lm": [10.0, 5.0], "best_teacher": [5.0, 2.0]}},
    }
    rec = tmp_path / "rec.json"
    rec.write_text(json.dumps({"teachers_test_auc": {"lm": 0.76}, "methods": methods, "command": "x"}))
    out = tmp_path / "lm_teacher.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks/lm_teacher_report.py"), "--lm-runs", str(tmp_path / "lm"),
                    "--student-runs", str(tmp_path / "students"), "--token-cache", str(tmp_path / "absent"), "--rec", str(rec),
                    "--out", str(out)], check=True, capture_output=True)
    report = json.loads(out.read_text())
    assert report["lm_val_auc"] == [0.73, 0.74, 0.75] and report["student_val_auc"] == [0.69, 0.70, 0.71]
    assert report["lm_margin"]["val_auc"] == pytest.approx(0.04)
    assert report["lm_margin"]["student_stds"] == pytest.approx(4.0)  # 0.04 over a student std of 0.01
    assert report["gap_recovered_vs_lm"] == {"no_kd": 0.0, "logit_kd[lm]": 20.0, "avg_kd": 10.0}
    assert report["lm_only_share_of_lm_gap"] == 20.0
    assert report["averaging_vs_single_teacher"]["avg_below_single"] is True
    assert report["token_cache"] is None and out.with_suffix(".png").is_file()

"""The reproduction scripts' shared arithmetic (paired gap recovered) and plots."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from report import mean_std, paired_gaps, plot_gap, plot_val_curves  # noqa: E402


def test_paired_gap_uses_each_seeds_own_anchor() -> None:
    per_seed = {"no_kd": [0.80, 0.70], "method": [0.85, 0.72]}
    out = paired_gaps(per_seed, {"teacher": 0.85}, base_mean=0.75)
    # deltas 0.05 and 0.02 over the gap 0.85 - 0.75 = 0.10 -> 50% and 20%
    assert out["method"]["delta"][0] == pytest.approx(0.035)
    assert out["method"]["gap_vs"]["teacher"][0] == pytest.approx(35.0)
    assert out["method"]["gap_vs"]["teacher"][1] == pytest.approx(mean_std([50.0, 20.0])[1])
    assert out["no_kd"]["gap_vs"]["teacher"] == [0.0, 0.0]


def test_mean_std_of_one_value_has_zero_spread() -> None:
    assert mean_std([0.5]) == [0.5, 0.0]


def test_plots_are_written(tmp_path: Path) -> None:
    results = {"no_kd": {"gap_vs": {"t": [0.0, 0.0]}}, "diverse_distill": {"gap_vs": {"t": [40.0, 5.0]}}}
    plot_gap(results, tmp_path / "gap.png", "t", "title")
    histories = {"no_kd": [[{"val_top1": 0.8}, {"val_top1": 0.82}], [{"val_top1": 0.81}]]}
    plot_val_curves(histories, "val_top1", tmp_path / "curves.png", "title")
    assert (tmp_path / "gap.png").stat().st_size > 1000 and (tmp_path / "curves.png").stat().st_size > 1000

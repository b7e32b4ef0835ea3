"""``make demo`` shows what the method does: the committee's best teacher above the student, and
(vision) the distilled student above no-KD. Slow (the whole demo, ~10 minutes on 2 cores): ``make test-all``."""

from __future__ import annotations

from pathlib import Path

import pytest


def _by_name(rows: list[dict]) -> dict[str, dict]:
    return {r["name"]: r for r in rows}


@pytest.mark.slow
def test_recommendation_demo_shows_distillation_working(tmp_path: Path, real_data_dir) -> None:
    from recsys_committee.demo import run_demo

    rows = _by_name(run_demo(tmp_path / "rec", overrides=["train.progress=false"]))
    auc = {name: r["test"]["auc"] for name, r in rows.items()}
    # the best expert stays above the no-KD student (there is a gap to distil); the student that
    # reads every input is above DLRM (0.011 over 5 seeds). Distillation's own gain is not
    # asserted: over 5 seeds it is not there (benchmarks/results/gap.json).
    assert auc["expert_din_dcn"] > auc["student <- no_kd"] > auc["expert_dlrm"], auc
    assert 22_812_033 / rows["student <- no_kd"]["params"] >= 38.0


@pytest.mark.slow
def test_vision_demo_shows_distillation_working(tmp_path: Path, fashion_root, imagenet_weights) -> None:
    from vision_committee.demo import run_vision_demo

    rows = _by_name(run_vision_demo(tmp_path / "vision", overrides=["train.progress=false"]))
    top1 = {name: r["top1"] for name, r in rows.items()}
    assert min(top1[t] for t in ("foundation", "expert_wide", "expert_deep")) > top1["student <- no_kd"], top1
    assert top1["student <- diverse_distill + 2 transfer/image"] > top1["student <- no_kd"], top1

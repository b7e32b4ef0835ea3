"""The reproduction scripts' shared arithmetic (paired gap recovered) and plots."""

from __future__ import annotations

import sys
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import torch  # noqa: E402

from report import mean_std, paired_bootstrap, paired_gaps, reusable_metrics, seed_interval, plot_gap, plot_val_curves  # noqa: E402


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


def test_plots_are_written(tmp_path: Path, monkeypatch) -> None:
    """What each figure draws, read back from the figure saved: the gap bars (no_kd, the anchor,
    left out) with their spreads, and the mean validation curve over the seeds that reached each epoch."""
    from matplotlib.colors import to_rgb
    from matplotlib.container import ErrorbarContainer
    from matplotlib.figure import Figure

    saved: dict[str, Figure] = {}
    savefig = Figure.savefig

    def keep(fig, path, *args, **kwargs):
        saved[Path(path).name] = fig
        return savefig(fig, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    results = {"no_kd": {"gap_vs": {"t": [0.0, 0.0]}}, "diverse_distill": {"gap_vs": {"t": [40.0, 5.0]}},
               "camkd": {"gap_vs": {"t": [-12.5, 3.0], "other": [99.0, 1.0]}}}
    plot_gap(results, tmp_path / "gap.png", "t", "title")
    histories = {"no_kd": [[{"val_top1": 0.8}, {"val_top1": 0.82}], [{"val_top1": 0.81}]],
                 "diverse_distill": [[{"val_top1": 0.7}, {"val_top1": 0.9}, {"val_top1": 0.6}], [{"val_top1": 0.5}, {"val_top1": 0.7}]]}
    plot_val_curves(histories, "val_top1", tmp_path / "curves.png", "curves title")
    for name in ("gap.png", "curves.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name

    (ax,) = saved["gap.png"].axes
    assert [p.get_height() for p in ax.patches] == [40.0, -12.5]  # the reference's gap, in results order
    assert [t.get_text() for t in ax.get_xticklabels()] == ["diverse_distill", "camkd"]
    assert [p.get_facecolor()[:3] for p in ax.patches] == [to_rgb("tab:red"), to_rgb("tab:gray")]  # the method stands out
    (errorbar,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    (segments,) = errorbar.lines[2]  # the vertical error segments: the gap +- its spread
    assert [sorted(seg[:, 1].tolist()) for seg in segments.get_segments()] == [[35.0, 45.0], [-15.5, -9.5]]
    assert ax.get_ylabel() == "gap recovered vs t (%)" and ax.get_title() == "title"

    (ax,) = saved["curves.png"].axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert sorted(lines) == ["diverse_distill", "no_kd"]
    assert lines["no_kd"].get_xdata().tolist() == [0, 1]
    assert lines["no_kd"].get_ydata() == pytest.approx([0.805, 0.82])  # epoch 1: only the seed that reached it
    assert lines["diverse_distill"].get_ydata() == pytest.approx([0.6, 0.8, 0.6])
    assert ax.get_ylabel() == "val top1" and ax.get_title() == "curves title"


def _top1(pred: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> float:
    return float(((pred == labels).double() * weights).sum() / weights.sum())


def test_paired_bootstrap_identical_models_differ_by_nothing() -> None:
    labels = torch.randint(0, 3, (500,), generator=torch.Generator().manual_seed(1))
    pred = labels.clone()
    pred[::4] = (pred[::4] + 1) % 3
    out = paired_bootstrap(_top1, [(pred, pred), (pred, pred)], labels, draws=50)
    assert out["delta"] == 0.0 and out["ci95"] == [0.0, 0.0] and out["seed_std"] == 0.0


def test_paired_bootstrap_interval_separates_a_real_difference_from_noise() -> None:
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (2000,), generator=gen)
    good = labels.clone()
    good[:200] = 1 - good[:200]  # 90% right
    bad = labels.clone()
    bad[:400] = 1 - bad[:400]  # 80% right: the 10-point gap must be outside noise
    out = paired_bootstrap(_top1, [(good, bad)], labels, draws=200)
    assert out["delta"] == pytest.approx(0.10)
    assert 0.0 < out["ci95"][0] < 0.10 < out["ci95"][1]
    assert out["relative"] == pytest.approx(0.10 / 0.80)
    other = labels.clone()
    other[1000:1199] = 1 - other[1000:1199]  # also ~90% right, wrong on other rows: noise, not a gap
    close = paired_bootstrap(_top1, [(other, good)], labels, draws=200)
    assert close["delta"] == pytest.approx(0.0005)
    assert close["ci95"][0] < 0.0 < close["ci95"][1]


def test_seed_interval_is_a_t_interval_and_needs_two_seeds() -> None:
    lo, hi = seed_interval([0.01, 0.03, 0.02])
    assert (lo + hi) / 2 == pytest.approx(0.02)
    assert (hi - lo) / 2 == pytest.approx(4.303 * 0.01 / 3**0.5)
    assert seed_interval([0.01]) is None


@dataclass
class _Optim:
    lr: float = 0.1
    schedule: str = "constant"  # an option the stored run below predates


@dataclass
class _Train:
    progress: bool = True


@dataclass
class _Config:
    optim: _Optim = field(default_factory=_Optim)
    train: _Train = field(default_factory=_Train)


def test_reuse_reads_a_run_only_if_it_ran_the_same_config(tmp_path: Path) -> None:
    import json as _json

    import yaml

    run = tmp_path / "run"
    run.mkdir()
    assert reusable_metrics(run, _Config()) is None  # not finished: run it
    (run / "config.yaml").write_text(yaml.safe_dump({"optim": {"lr": 0.1}, "train": {"progress": True}}))
    (run / "metrics.json").write_text(_json.dumps({"test": {"auc": 0.7}}))
    same = _Config(train=_Train(progress=False))  # progress changes no result
    assert reusable_metrics(run, same)["test"]["auc"] == 0.7
    with pytest.raises(SystemExit, match=r"optim.lr: 0.1 \(stored\) vs 0.2"):
        reusable_metrics(run, _Config(optim=_Optim(lr=0.2), train=_Train(progress=False)))
    # an option added after the run: fine at its default, a difference otherwise
    newer = _Config(optim=_Optim(schedule="constant"), train=_Train(progress=False))
    assert reusable_metrics(run, newer) is not None
    newer.optim.schedule = "cosine"
    with pytest.raises(SystemExit, match="optim.schedule"):
        reusable_metrics(run, newer)

def test_a_run_from_before_the_fused_adamw_reuses_only_under_the_pinned_loop(tmp_path: Path) -> None:
    """Runs recorded before ``optim.fused_adamw`` existed trained with the loop AdamW: under
    today's default (fused) they are another config; pinned ``optim.fused_adamw=false`` they
    are the same one."""
    import json as _json

    import yaml

    from recsys_committee.train.config import RunConfig

    run = tmp_path / "old"
    run.mkdir()
    cfg = RunConfig()
    stored = dataclasses.asdict(cfg)
    del stored["optim"]["fused_adamw"]
    (run / "config.yaml").write_text(yaml.safe_dump(stored))
    (run / "metrics.json").write_text(_json.dumps({"test": {"auc": 0.7}}))
    with pytest.raises(SystemExit, match=r"optim.fused_adamw: False \(run before the option existed\) vs True"):
        reusable_metrics(run, cfg)
    cfg.optim.fused_adamw = False
    assert reusable_metrics(run, cfg)["test"]["auc"] == 0.7

"""What the reproduction scripts share: mean ± std, paired gap recovered, and the plots.

gap% = 100 (M(method) - M(no-KD)) / (M(teacher) - M(no-KD)), computed per seed against the
same seed's no-KD run (paired: the seed-to-seed spread is often larger than the effects) and
then averaged. Plots: gap-recovered bars with error bars; validation curves per method.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch


# keys that change how a run reports, not what it computes
_NOT_RESULT_KEYS = {"train.progress"}


# ``data`` keys a run config used to fill with MovieLens' values; they are unset now (each domain
# fills its own default), so a run that stored these values read the same data as one that left
# them unset.
_IMPLICIT_DATA_DEFAULTS = {"data.dataset": "movielens", "data.root": "data/ml-100k", "data.name": "ml-100k",
                           "data.history_len": 20, "data.long_history_len": 50, "data.fractions": [0.8, 0.1, 0.1]}

# Options added after results were recorded, with the value every run that predates them ran
# with (a stored config without the key ran that way, whatever today's default is).
_PREDATING_VALUES = {"optim.fused_adamw": False}


def config_differences(stored: dict[str, Any], wanted: dict[str, Any], defaults: dict[str, Any] | None = None, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested config dicts. A key the stored config
    lacks is an option added after that run: it differs only if ``wanted`` is not its default
    (for an option in ``_PREDATING_VALUES``: not the value runs before it ran with)."""
    out = []
    defaults = defaults or {}
    for key in sorted(set(stored) | set(wanted)):
        name = f"{prefix}{key}"
        a, b, d = stored.get(key), wanted.get(key), defaults.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, d if isinstance(d, dict) else {}, name + ".")
        elif key not in stored and name in _PREDATING_VALUES:
            if b != _PREDATING_VALUES[name]:
                out.append(f"{name}: {_PREDATING_VALUES[name]!r} (run before the option existed) vs {b!r} (this command)")
        elif key not in stored and key in defaults and b == d:
            continue
        elif b is None and name in _IMPLICIT_DATA_DEFAULTS and a == _IMPLICIT_DATA_DEFAULTS[name]:
            continue  # the run dumped the old explicit default; unset now means the same source
        elif a != b and name not in _NOT_RESULT_KEYS:
            out.append(f"{name}: {a!r} (stored) vs {b!r} (this command)")
    return out


def reusable_metrics(run_dir: Path, cfg: Any) -> dict[str, Any] | None:
    """``--reuse``: the run's metrics if it finished with ``cfg`` (a RunConfig), the config this
    command would run; None if it has not finished. Why the check: a run kept from an earlier
    protocol (another schedule, another answer width) must not be read into a table labelled
    with today's command. Options the run predates are compared with their defaults."""
    import yaml

    metrics = run_dir / "metrics.json"
    if not metrics.exists():
        return None
    stored = yaml.safe_load((run_dir / "config.yaml").read_text()) if (run_dir / "config.yaml").exists() else {}
    diff = config_differences(stored, dataclasses.asdict(cfg), dataclasses.asdict(type(cfg)()))
    if diff:
        raise SystemExit(f"--reuse: {run_dir} was run with another config; delete it or drop --reuse. " + "; ".join(diff))
    return json.loads(metrics.read_text())


def mean_std(values: Sequence[float]) -> list[float]:
    values = list(values)
    return [statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0]


def gap(method: float, base: float, base_std: float, reference: Optional[float], name: str) -> tuple[Optional[float], Optional[str]]:
    """The share of the no-KD -> reference gap a method recovers, or None with why: no reference,
    or one less than 2 no-KD seed stds above the no-KD mean (a share of noise is no figure)."""
    if reference is None:
        return None, f"no {name} reference"
    if reference - base < 2 * base_std:
        return None, f"the {name} ({reference:.4f}) is less than 2 no-KD seed stds ({base_std:.4f}) above the no-KD mean ({base:.4f})"
    return (method - base) / (reference - base), None


def paired_gaps(per_seed: dict[str, list[float]], references: dict[str, float], base_mean: float) -> dict[str, dict[str, Any]]:
    """{method: {"delta": mean_std, "gap_vs": {reference: mean_std %}}} against ``no_kd``."""
    no_kd = per_seed["no_kd"]
    out = {}
    for method, values in per_seed.items():
        deltas = [a - b for a, b in zip(values, no_kd)]
        out[method] = {
            "delta": mean_std(deltas),
            "gap_vs": {ref: mean_std([100 * d / (m - base_mean) for d in deltas]) for ref, m in references.items()},
        }
    return out


# two-sided 95% Student t quantiles by degrees of freedom (no scipy in the stack); past 10 the
# 10-df value is used, which only widens the interval
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def seed_interval(deltas: Sequence[float]) -> list[float] | None:
    """95% t-interval of the mean of per-seed paired differences: the training noise (init,
    data order) that a bootstrap over test rows, with the models held fixed, does not see."""
    if len(deltas) < 2:
        return None
    half = _T95[min(len(deltas) - 1, 10)] * statistics.stdev(deltas) / len(deltas) ** 0.5
    return [statistics.mean(deltas) - half, statistics.mean(deltas) + half]


def paired_bootstrap(
    metric: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], float],
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
    labels: torch.Tensor,
    draws: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Difference metric(a) - metric(b) between two methods scored on the SAME test rows, and
    its 95% interval under resampling of those rows.

    ``pairs``: one (scores_a, scores_b) per training seed; ``metric(scores, labels, weights)``
    with per-row weights. Each draw resamples the rows once (multinomial counts used as
    weights, so AUC needs no gather) and applies it to every seed, so the interval is that of
    the seed-mean difference with the trained models held fixed: what the test set's size alone
    lets us resolve. The seed-to-seed spread is reported next to it, not mixed in.
    """
    n = labels.shape[0]
    whole = [(metric(a, labels, torch.ones(n)), metric(b, labels, torch.ones(n))) for a, b in pairs]
    point = [ma - mb for ma, mb in whole]
    gen = torch.Generator().manual_seed(seed)
    means = []
    for _ in range(draws):
        counts = torch.bincount(torch.randint(n, (n,), generator=gen), minlength=n).double()
        means.append(statistics.mean(metric(a, labels, counts) - metric(b, labels, counts) for a, b in pairs))
    means.sort()
    lo, hi = means[int(0.025 * draws)], means[min(draws - 1, int(0.975 * draws))]
    ref = statistics.mean(mb for _, mb in whole)
    return {
        "delta_per_seed": point,
        "delta": statistics.mean(point),
        "seed_std": statistics.stdev(point) if len(point) > 1 else 0.0,
        "seed_ci95": seed_interval(point),
        "ci95": [lo, hi],
        "relative": statistics.mean(point) / ref,
        "relative_ci95": [lo / ref, hi / ref],
        "rows": n,
        "draws": draws,
    }


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_gap(results: dict, path: Path, reference: str, title: str) -> None:
    plt = _plt()
    names = [m for m in results if m != "no_kd" and "gap_vs" in results[m]]
    gaps = [results[m]["gap_vs"][reference] for m in names]
    fig, ax = plt.subplots(figsize=(8, 3.8))
    ax.bar(range(len(names)), [g[0] for g in gaps], yerr=[g[1] for g in gaps], capsize=3,
           color=["tab:red" if n.startswith("diverse") else "tab:gray" for n in names])
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel(f"gap recovered vs {reference} (%)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_val_curves(histories: dict[str, list[list[dict[str, Any]]]], key: str, path: Path, title: str) -> None:
    """Mean validation metric per epoch for each method (over the seeds that reached it)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for method, runs in histories.items():
        n = max(len(h) for h in runs)
        means = [statistics.mean(h[e][key] for h in runs if len(h) > e) for e in range(n)]
        ax.plot(range(n), means, "o-" if method.startswith("diverse") else ".--", label=method, lw=2 if method.startswith("diverse") else 1)
    ax.set_xlabel("epoch")
    ax.set_ylabel(key.replace("_", " "))
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""What the reproduction scripts share: mean ± std, paired gap recovered, and the plots.

gap% = 100 (M(method) - M(no-KD)) / (M(teacher) - M(no-KD)), computed per seed against the
same seed's no-KD run (paired: the seed-to-seed spread is often larger than the effects) and
then averaged. Plots: gap-recovered bars with error bars; validation curves per method.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Sequence


def mean_std(values: Sequence[float]) -> list[float]:
    values = list(values)
    return [statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0]


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

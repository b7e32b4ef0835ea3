"""Learning-curve PNGs (people read a curve faster than a JSON list)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_learning_curve(history: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    key = next((k for k in history[0] if k.startswith("val_")), "val_auc") if history else "val_auc"
    label = key[len("val_"):].replace("_", " ")
    label = "AUC" if label == "auc" else label
    fig, ax1 = plt.subplots(figsize=(5, 3.2))
    ax1.plot(epochs, [h[key] for h in history], "o-", color="tab:blue", label=f"val {label}")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel(f"validation {label}", color="tab:blue")
    ax2 = ax1.twinx()
    ax2.plot(epochs, [h["train_loss"] for h in history], "s--", color="tab:orange", label="train loss")
    ax2.set_ylabel("train loss", color="tab:orange")
    ax1.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

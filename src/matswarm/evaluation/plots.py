"""Parity plots and per-round curves (PNG, matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def parity_plot(
    y_true: np.ndarray, predictions: Mapping[str, np.ndarray], unit: str, path: Path, title: str
) -> Path:
    """Predicted vs true for several models on one panel each."""
    n = len(predictions)
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 3.5), squeeze=False)
    lo = float(min(y_true.min(), *(p.min() for p in predictions.values())))
    hi = float(max(y_true.max(), *(p.max() for p in predictions.values())))
    for ax, (name, pred) in zip(axes[0], predictions.items(), strict=True):
        mse = float(np.mean((pred - y_true) ** 2))
        ax.scatter(y_true, pred, s=6, alpha=0.6)
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_title(f"{name}\nMSE {mse:.4f}", fontsize=9)
        ax.set_xlabel(f"true ({unit})", fontsize=8)
        ax.set_ylabel(f"predicted ({unit})", fontsize=8)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def curves_plot(
    curves: Mapping[str, Sequence[float]],
    path: Path,
    title: str,
    ylabel: str,
    log: bool = True,
    reference: Mapping[str, float] | None = None,
) -> Path:
    """One line per series over rounds; ``reference`` draws horizontal lines (e.g. Joint)."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for name, ys in curves.items():
        ax.plot(np.arange(1, len(ys) + 1), ys, label=name, lw=1.2)
    for name, y in (reference or {}).items():
        ax.axhline(y, ls="--", lw=0.9, color="gray")
        ax.text(1, y, f" {name}", va="bottom", fontsize=8, color="gray")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("round")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def confusion_plot(
    y_true: np.ndarray, probabilities: Mapping[str, np.ndarray], path: Path, title: str
) -> Path:
    """One 2x2 confusion matrix (counts, threshold 0.5) per model, true class in rows."""
    from matswarm.evaluation.classification import confusion

    n = len(probabilities)
    fig, axes = plt.subplots(1, n, figsize=(2.9 * n, 3.1), squeeze=False)
    for ax, (name, prob) in zip(axes[0], probabilities.items(), strict=True):
        cm = confusion(y_true, prob)
        ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(int(cm.max()), 1))
        for (i, j), v in np.ndenumerate(cm):
            color = "white" if v > cm.max() / 2 else "black"
            ax.text(j, i, str(int(v)), ha="center", va="center", color=color, fontsize=10)
        acc = float(np.trace(cm)) / max(int(cm.sum()), 1)
        ax.set_title(f"{name}\naccuracy {acc:.3f}", fontsize=9)
        ax.set_xticks([0, 1], ["pred 0", "pred 1"], fontsize=8)
        ax.set_yticks([0, 1], ["true 0", "true 1"], fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def bar_plot(bars: Mapping[str, tuple[float, float]], path: Path, title: str, ylabel: str) -> Path:
    """Horizontal bars with error bars: ``{label: (mean, std)}``."""
    labels = list(bars)
    means = [bars[k][0] for k in labels]
    stds = [bars[k][1] for k in labels]
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(labels) + 1.2))
    y = np.arange(len(labels))
    ax.barh(y, means, xerr=stds, capsize=3, color="tab:blue", alpha=0.8)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(ylabel)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

"""Figures the evaluators draw beyond :mod:`mlcv.report`'s: per-class bars, precision-recall curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

# Selects matplotlib's Agg backend (no display on servers and CI); pyplot settles its backend only
# when the first figure is made, so importing pyplot first is harmless.
from mlcv import report  # noqa: F401


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_per_class(
    values: Sequence[float], path: Path, ylabel: str, title: str = "", class_names: Sequence[str] = ()
) -> Path:
    """Bars of one value per class (NaN bars are left empty), with the mean over defined classes dashed."""
    v = np.asarray(values, np.float64)
    k = len(v)
    names = list(class_names) if len(class_names) == k else [str(i) for i in range(k)]
    # Up to 12 inches wide: past ~60 classes the labels would overlap anyway, so they are dropped.
    fig, ax = plt.subplots(figsize=(min(2 + 0.3 * k, 12), 4))
    ax.bar(np.arange(k), np.nan_to_num(v, nan=0.0))
    if np.isfinite(v).any():
        ax.axhline(np.nanmean(v), color="k", linestyle="--", linewidth=1, label=f"mean {np.nanmean(v):.3f}")
        ax.legend()
    if k <= 60:
        ax.set_xticks(np.arange(k), names, rotation=90 if k > 10 else 0, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, Path(path))


def plot_precision_recall(precision: Sequence[float], recall: Sequence[float], path: Path, title: str = "") -> Path:
    """The precision-recall curve as the step function that average precision integrates."""
    fig, ax = plt.subplots(figsize=(5, 4))
    # The curve comes with decreasing recall; precision P_n holds on (R_{n+1}, R_n], hence "post" steps.
    ax.step(recall, precision, where="post")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _save(fig, Path(path))

"""Figures the evaluators draw beyond :mod:`mlcv.report`'s: per-class bars, precision-recall curves, and the
PNG strings in which evaluators keep a few example images and label maps in a run's JSON for their figures."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

# Selects matplotlib's Agg backend (no display on servers and CI); pyplot settles its backend only
# when the first figure is made, so importing pyplot first is harmless.
from mlcv import report  # noqa: F401


def image_png(image: np.ndarray) -> str:
    """An image scaled min-max to 0..255 for display, as a base64 PNG string: a few kB in the run's JSON."""
    x = np.asarray(image, np.float64)
    x = x[..., 0] if x.ndim == 3 and x.shape[-1] == 1 else x[..., :3]
    lo, hi = np.nanmin(x), np.nanmax(x)
    x = np.round(255 * (x - lo) / (hi - lo if hi > lo else 1.0)).astype(np.uint8)
    buf = io.BytesIO()
    plt.imsave(buf, x, format="png", cmap="gray", vmin=0, vmax=255)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def png_image(text: str) -> np.ndarray:
    """The float image in [0, 1] that :func:`image_png` (or :func:`label_png`) stored."""
    return plt.imread(io.BytesIO(base64.b64decode(text)), format="png")


def label_png(labels: np.ndarray) -> str:
    """A map of integers in 0..255 ``[H, W]`` as a lossless gray base64 PNG string (:func:`png_labels` reads it)."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(f"label_png: values {labels.min()}..{labels.max()} do not fit in 0..255")
    buf = io.BytesIO()
    plt.imsave(buf, labels.astype(np.uint8), format="png", cmap="gray", vmin=0, vmax=255)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def png_labels(text: str) -> np.ndarray:
    """The int64 label map that :func:`label_png` stored."""
    return np.round(255 * png_image(text)[..., 0]).astype(np.int64)


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

"""PNG plots of training curves, confusion matrices, ablations, sweeps and 2-D decision regions."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from mlcv.report.tables import format_value, is_number  # noqa: E402


def plot_curves(records: Sequence[dict[str, Any]], metric: str, path: str | os.PathLike) -> None:
    """Plots ``<split>/<metric>`` against step for every split that logged it."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in sorted({k for r in records for k in r if k.split("/", 1)[-1] == metric and "/" in k}):
        pts = [(r["step"], r[key]) for r in records if r.get(key) is not None]
        if pts:
            x, y = zip(*pts, strict=False)
            ax.plot(x, y, marker="." if len(pts) < 50 else None, label=key)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    if metric == "loss":
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if ax.get_lines():  # a metric that was never finite (AP of a size no image has) draws no line to name
        ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(confusion: Sequence[Sequence[float]], path: str | os.PathLike, title: str = "") -> None:
    """Draws a confusion matrix with counts in the cells (rows: true class)."""
    c = np.asarray(confusion)
    k = c.shape[0]
    # Grows with the class count up to 12 inches: 1,000 ImageNet classes at 0.45 in each would need a
    # 45,000-pixel-square canvas (gigabytes); beyond ~25 classes the cells are pixels of a heat map anyway.
    fig, ax = plt.subplots(figsize=(min(1 + 0.45 * k, 12), min(1 + 0.4 * k, 12)))
    ax.imshow(c, cmap="Blues")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if c[i, j]:
                    ax.text(
                        j,
                        i,
                        int(c[i, j]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if c[i, j] > c.max() / 2 else "black",
                    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_schedules(total_steps: int, schedules: dict[str, Any], path: str | os.PathLike) -> None:
    """Plots each ``step -> value`` schedule over a run, one panel each (lr, momentum, ...)."""
    # At most 1,000 points: schedules are evaluated one step at a time.
    steps = np.unique(np.linspace(0, max(total_steps - 1, 0), min(total_steps, 1000)).astype(int))
    fig, axes = plt.subplots(len(schedules), 1, figsize=(6, 2.2 * len(schedules)), sharex=True, squeeze=False)
    for ax, (name, fn) in zip(axes[:, 0], schedules.items(), strict=True):
        ax.plot(steps, [float(fn(int(t))) for t in steps])
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_ablation(
    stats: Sequence[tuple[str, float, float | None]], path: str | os.PathLike, xlabel: str = "test metric, mean ± std"
) -> None:
    """Horizontal bars of each row's mean with its std as an error bar, first row on top."""
    labels = [label for label, _, _ in stats]
    means = np.array([m for _, m, _ in stats])
    errs = np.array([0.0 if s is None else s for _, _, s in stats])
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(stats) + 1))
    y = np.arange(len(stats))[::-1]
    ax.barh(y, means, xerr=errs, color="tab:blue", alpha=0.7, capsize=3)
    ax.set_yticks(y, labels, fontsize=8)
    lo = max(0.0, float(np.min(means - errs)) - 2.0)
    ax.set_xlim(lo, min(100.0, float(np.max(means + errs)) + 0.5))
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_sweep_key(points: Sequence[tuple[Any, float]], key: str, ylabel: str, log: bool, path: Path) -> None:
    """A validation metric against one swept key: one point per trial, and the mean per value under repeats."""
    if not points:
        return
    xs, ys = zip(*points, strict=True)
    numeric = all(is_number(x) for x in xs)
    if not numeric:  # strings, tuples, booleans: one category each, in order of first appearance
        cats = list(dict.fromkeys(format_value(x) for x in xs))
        xs = [cats.index(format_value(x)) for x in xs]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(xs, ys, "o", alpha=0.7, label="trial")
    distinct = sorted(set(xs))
    if len(distinct) < len(xs):  # repeats: the mean per value shows the trend through the seed noise
        means = [float(np.mean([y for x, y in zip(xs, ys, strict=True) if x == d])) for d in distinct]
        ax.plot(distinct, means, "-", label="mean")
        ax.legend()
    if not numeric:
        ax.set_xticks(range(len(cats)), cats, rotation=30 if max(map(len, cats)) > 6 else 0)
    elif log:
        ax.set_xscale("log")
    ax.set_xlabel(key)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    tmp.replace(path)


@dataclasses.dataclass(frozen=True)
class RegionPanel:
    """One panel of :func:`plot_decision_regions`: a classifier's predicted class over a grid of a 2-D plane.

    Attributes:
      title: the panel's title.
      classes: ``[H, W]`` predicted class per grid cell; row 0 at the bottom (``extent[2]``).
      extent: ``(x0, x1, y0, y1)``: the plane's window that the grid covers.
      points: ``[N, 2]`` points of that plane drawn over the regions, coloured by their true class.
      axes: the names of the plane's two axes.
    """

    title: str
    classes: np.ndarray
    extent: tuple[float, float, float, float]
    points: np.ndarray
    axes: tuple[str, str] = ("x", "y")


def plot_decision_regions(
    panels: Sequence[RegionPanel], labels: np.ndarray, class_names: Sequence[str], path: str | os.PathLike
) -> None:
    """Panels side by side: each classifier's decision regions (light) and the labelled points (dark) on them."""
    colors = plt.get_cmap("tab10").colors[: len(class_names)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.4), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        ax.imshow(
            panel.classes,
            origin="lower",
            extent=panel.extent,
            cmap=ListedColormap(colors),
            vmin=-0.5,
            vmax=len(class_names) - 0.5,
            alpha=0.3,
            aspect="auto",
            interpolation="nearest",
        )
        for k, name in enumerate(class_names):
            pts = panel.points[labels == k]
            ax.scatter(pts[:, 0], pts[:, 1], s=8, color=colors[k], edgecolors="black", linewidths=0.3, label=name)
        ax.set_xlim(panel.extent[:2])
        ax.set_ylim(panel.extent[2:])
        ax.set_xlabel(panel.axes[0])
        ax.set_ylabel(panel.axes[1])
        ax.set_title(panel.title, fontsize=10)
    axes[0, 0].legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)

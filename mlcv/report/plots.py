"""PNG plots of training curves, confusion matrices, ablations, sweeps, 2-D decision regions and learning curves."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

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
    _save(fig, path)


def _save(fig: Any, path: str | os.PathLike) -> None:
    """Writes ``fig`` as a PNG through a temporary file, so a killed run never leaves half a picture."""
    path = Path(path)
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
    _save(fig, path)


YTICKS = (0, 1, 2, 5, 10, 20, 50, 100)
REGIONS = {"under": ("under-fitting", "tab:orange"), "over": ("over-fitting", "tab:red")}


@dataclasses.dataclass(frozen=True)
class LearningCurve:
    """One panel: errors in % as (mean, std or None) per swept value ``x``, and each point's region.

    ``regions`` holds ``"under"``, ``"over"`` or ``""`` per point.
    """

    title: str
    xlabel: str
    x: Sequence[float]
    train: Sequence[tuple[float, float | None]]
    val: Sequence[tuple[float, float | None]]
    regions: Sequence[str]


def _spans(x: Sequence[float], labels: Sequence[str]) -> list[tuple[float, float, str]]:
    """(left, right, label) of each run of equal non-empty labels, edges halfway between points on a log axis."""
    logs = [math.log(v) for v in x]
    edges = [logs[0] - (logs[1] - logs[0]) / 2 if len(x) > 1 else logs[0] - 0.5]
    edges += [(a + b) / 2 for a, b in zip(logs, logs[1:], strict=False)]
    edges += [logs[-1] + (logs[-1] - logs[-2]) / 2 if len(x) > 1 else logs[-1] + 0.5]
    out: list[tuple[float, float, str]] = []
    for i, label in enumerate(labels):
        if label and out and out[-1][2] == label and out[-1][1] == math.exp(edges[i]):
            out[-1] = (out[-1][0], math.exp(edges[i + 1]), label)
        elif label:
            out.append((math.exp(edges[i]), math.exp(edges[i + 1]), label))
    return out


def plot_learning_curves(panels: Sequence[LearningCurve], path: str | os.PathLike) -> None:
    """Panels side by side, log x at the swept values; the y axis is linear below 1 % and logarithmic above, so
    that a training error of 0 and validation errors from 1 to 90 % read on one axis."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.4), squeeze=False, sharey=True)
    for ax, p in zip(axes[0], panels, strict=True):
        for lo, hi, label in _spans(p.x, p.regions):
            name, color = REGIONS[label]
            ax.axvspan(lo, hi, color=color, alpha=0.15, lw=0)
            # In the linear band under 1 %, which the curves cross but seldom follow.
            ax.text(math.sqrt(lo * hi), 0.5, name, ha="center", va="center", fontsize=9, color=color, weight="bold")
        for errors, name, style, color in ((p.train, "training", "--o", "tab:blue"), (p.val, "validation", "-s", "k")):
            mean = [m for m, _ in errors]
            std = [s or 0.0 for _, s in errors]
            ax.errorbar(p.x, mean, yerr=std, fmt=style, color=color, ms=4, capsize=3, label=f"{name} error")
        ax.set_xscale("log")
        ax.set_xticks(p.x, [str(v) for v in p.x], fontsize=8)
        ax.minorticks_off()
        ax.set_yscale("symlog", linthresh=1.0, linscale=0.5)
        ax.set_yticks(YTICKS, [str(v) for v in YTICKS])
        ax.set_ylim(0, 100)
        ax.set_xlabel(p.xlabel)
        ax.set_title(p.title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("error (%), mean ± std over seeds")
    handles, _ = axes[0, 0].get_legend_handles_labels()
    handles += [Patch(color=c, alpha=0.3, label=n) for n, c in REGIONS.values()]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))  # room for the legend under the panels, clear of the curves
    _save(fig, path)

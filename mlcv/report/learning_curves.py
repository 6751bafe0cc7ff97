"""The plot of learning curves: training and validation error along one swept key per panel, regions shaded."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

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
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)

"""Learning curves: training and validation error against capacity and training-set size, with their regions.

Reads an ablation workdir whose row ids name points of a grid (``size=100,width=8``) and whose runs report
accuracy on the training split (``summary.json``'s ``train``, written with ``config.evaluate_train``), as
``experiments/digits_learning_curves.py`` makes. Every set of at least three points that differ in one key
only is a curve along that key. Errors are 1 - accuracy in %, mean ± sample std over a point's seeds; the gap
is the mean validation error minus the mean training error.

The regions (:func:`regions`), decided from the means:

- **under-fitting**: the training error is at least ``UNDER_MIN`` points and at least the gap: most of the
  validation error is made on the training images already;
- **over-fitting**: not under-fitting, and the gap is more than ``OVER_MARGIN`` points above the reference gap,
  the gap of the sweep's best point (least validation error): the model fits its training images far better
  than the best model of the sweep does, and pays for it on images it has not seen.

Command line (writes ``learning_curves.md`` into the workdir and the plot where ``--png`` says)::

  python -m mlcv.orchestration.learning_curves docs/digits_learning_curves --png docs/digits_learning_curves.png
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from mlcv.config import ConfigError
from mlcv.report import plots, tables

UNDER_MIN = 1.0  # points of training error below which nothing is called under-fitting
# Points of gap above the reference before over-fitting: above the seed-to-seed spread of a validation error on
# 180 images (one image is 0.56 points; the std over 3 seeds reaches 1.7 points on digits).
OVER_MARGIN = 2.0
DATA_KEYS = ("size",)  # keys of the training data rather than of the model: their curves are drawn last
TITLES = {"size": "training images", "width": "hidden units (width)"}

Point = tuple[tuple[str, int], ...]  # (("size", 100), ("width", 8)): the keys in sorted order


@dataclasses.dataclass(frozen=True)
class Curve:
    """Errors along ``key`` with the other keys held at ``fixed``; one entry per point, in order of ``x``.

    ``train`` and ``val`` hold (mean, std) of the error in % (std None for one seed); ``seeds`` the count of
    runs; ``regions`` each point's (:func:`regions`).
    """

    key: str
    fixed: dict[str, int]
    x: list[int]
    train: list[tuple[float, float | None]]
    val: list[tuple[float, float | None]]
    seeds: list[int]
    regions: list[str]


def regions(train: Sequence[float], val: Sequence[float], reference_gap: float) -> list[str]:
    """``"under"``, ``"over"`` or ``""`` for each point of mean errors ``train`` and ``val`` in % (module rule)."""
    out = []
    for t, v in zip(train, val, strict=True):
        gap = v - t
        out.append("under" if t >= max(UNDER_MIN, gap) else "over" if gap > reference_gap + OVER_MARGIN else "")
    return out


def _point(row_id: str) -> dict[str, int]:
    try:
        return {k: int(v) for k, v in (part.split("=") for part in row_id.split(","))}
    except ValueError:
        raise ConfigError(f"row {row_id!r} does not name a point (key=integer,...)") from None


def read(workdir: str | Path) -> dict[Point, dict[str, list[float]]]:
    """Every point of ``workdir`` with its runs' training and validation errors in % (one value per seed)."""
    out: dict[Point, dict[str, list[float]]] = {}
    for path in sorted(Path(workdir).glob("*/seed=*/summary.json")):
        summary = json.loads(path.read_text())
        if "train" not in summary:
            raise ConfigError(f"{path} has no training-split metrics: run with config.evaluate_train=True")
        point = tuple(sorted(_point(path.parent.parent.name).items()))
        errors = out.setdefault(point, {"train": [], "val": []})
        errors["train"].append(100 * (1 - summary["train"]["accuracy"]))
        errors["val"].append(100 * (1 - summary["validation"]["accuracy"]))
    if not out:
        raise ConfigError(f"{workdir} holds no finished run (<row>/seed=<s>/summary.json)")
    return out


def reference(points: Mapping[Point, Mapping[str, list[float]]]) -> tuple[Point, float]:
    """The point of least mean validation error (the first of ties, in sorted order) and its gap."""
    mean = {p: {s: statistics.fmean(e[s]) for s in ("train", "val")} for p, e in sorted(points.items())}
    best = min(mean, key=lambda p: mean[p]["val"])
    return best, mean[best]["val"] - mean[best]["train"]


def curves(points: Mapping[Point, Mapping[str, list[float]]]) -> list[Curve]:
    """The curves through ``points`` (:func:`read`): each set of >= 3 points that differ in one key only.

    Capacity keys come first, data keys (:data:`DATA_KEYS`) last; curves along one key by falling fixed values.
    """
    _, ref_gap = reference(points)
    out = []
    for key in sorted({k for p in points for k, _ in p}, key=lambda k: (k in DATA_KEYS, k)):
        lines: dict[Point, list[tuple[int, Mapping[str, list[float]]]]] = {}
        for p, errors in points.items():
            if key in dict(p):
                lines.setdefault(tuple((k, v) for k, v in p if k != key), []).append((dict(p)[key], errors))
        for fixed, pts in sorted(lines.items(), reverse=True):
            if len(pts) < 3:
                continue
            pts.sort(key=lambda e: e[0])
            train, val = ([tables.mean_std(e[s]) for _, e in pts] for s in ("train", "val"))
            marks = regions([m for m, _ in train], [m for m, _ in val], ref_gap)
            out.append(Curve(key, dict(fixed), [x for x, _ in pts], train, val, [len(e["val"]) for _, e in pts], marks))
    return out


def _label(fixed: Mapping[str, int]) -> str:
    return ", ".join(f"{v} {TITLES.get(k, k)}" if k in DATA_KEYS else f"{k} {v}" for k, v in fixed.items())


def markdown(points: Mapping[Point, Mapping[str, list[float]]]) -> str:
    """The reference point, then one table per curve: each point's errors (mean ± std over seeds), gap, region."""
    best, ref_gap = reference(points)
    lines = [
        f"Reference (least mean validation error): {_label(dict(best))}, gap {ref_gap:.2f} points. Under-fitting: "
        f"training error >= max({UNDER_MIN:g}, gap); over-fitting: otherwise, gap > reference + {OVER_MARGIN:g}."
    ]
    for c in curves(points):
        body = [
            [x, n, tables.format_mean_std_of(*t, 2), tables.format_mean_std_of(*v, 2), f"{v[0] - t[0]:.2f}", r]
            for x, n, t, v, r in zip(c.x, c.seeds, c.train, c.val, c.regions, strict=True)
        ]
        header = [c.key, "seeds", "training error (%)", "validation error (%)", "gap (points)", "region"]
        lines += [f"### Against {c.key} ({_label(c.fixed)})", tables.markdown_table(header, body, "rrrrrl").rstrip()]
    return "\n\n".join(lines) + "\n"


def write(workdir: str | Path, png: str | Path | None = None) -> list[Curve]:
    """Writes ``learning_curves.md`` into ``workdir`` and the plot to ``png`` (default: beside it)."""
    workdir = Path(workdir)
    points = read(workdir)
    cs = curves(points)
    if not cs:
        raise ConfigError(f"{workdir} holds no curve: three points or more that differ in one key only")
    tables.write_text(workdir / "learning_curves.md", markdown(points))
    panels = [
        plots.LearningCurve(
            f"against {c.key}, {_label(c.fixed)}", TITLES.get(c.key, c.key), c.x, c.train, c.val, c.regions
        )
        for c in cs
    ]
    plots.plot_learning_curves(panels, Path(png) if png else workdir / "learning_curves.png")
    return cs


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: ``WORKDIR [--png PATH]``; prints the tables."""
    parser = argparse.ArgumentParser(description="Plot the learning curves of an ablation workdir.")
    parser.add_argument("workdir")
    parser.add_argument("--png", default=None, help="where the plot goes (default: WORKDIR/learning_curves.png)")
    args = parser.parse_args(argv)
    try:
        write(args.workdir, args.png)
        print((Path(args.workdir) / "learning_curves.md").read_text())
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

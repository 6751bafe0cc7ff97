"""Decision regions of finished ``circles_polar`` runs (course §5), and their table of test accuracy over seeds.

Run (after training the runs, docs/circles_polar.md):
  .venv/bin/python benchmarks/circles_polar.py \
      --runs cartesian=runs/circles_cartesian_s0,runs/circles_cartesian_s1,runs/circles_cartesian_s2 \
             polar=runs/circles_polar_s0,runs/circles_polar_s1,runs/circles_polar_s2 \
      --out docs/circles_polar.png

Prints a Markdown table: per label (one feature set, one workdir per seed) the test and validation accuracy of
the checkpoint chosen on validation (``summary.json``), mean ± sample std over the workdirs, and the wall time
of a run. Draws, for the first workdir of each label, its decision regions in the input (x, y) plane: a grid of
points pushed through the run's own evaluation preprocessing (``config.data.pp_eval``: nothing for Cartesian
features, the ``polar`` op for polar ones) and its trained classifier, with the test points on top. A run whose
preprocessing changes the points gets a second panel: the same classifier in its own feature plane, where its
boundary is a straight line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlcv import data  # noqa: E402
from mlcv.data import ops  # noqa: E402
from mlcv.report.plots import RegionPanel, plot_decision_regions  # noqa: E402
from mlcv.training import runs  # noqa: E402

GRID = 200  # cells a side


def _features(run: runs.Run, points: np.ndarray) -> np.ndarray:
    """``points [N, 2]`` through the run's evaluation preprocessing, one example at a time as the loader does."""
    spec = data.get(run.config.data.name)
    op = ops.parse(run.config.data.pp_eval, spec.op_defaults)
    rng = np.random.default_rng(0)  # evaluation ops draw nothing
    return np.stack([op({"image": p}, rng)["image"] for p in points])


def _classes(run: runs.Run, features: np.ndarray) -> np.ndarray:
    """The run's predicted class of each feature vector."""
    batch = {"image": features.astype(np.float32), "label": np.zeros(len(features), np.int64)}
    return np.asarray(jax.device_get(run.predict(batch)["logits"])).argmax(-1)


def _grid(extent: tuple[float, float, float, float]) -> np.ndarray:
    """``[GRID * GRID, 2]`` cell centres of ``extent``, row by row from the bottom."""
    xs = np.linspace(extent[0], extent[1], GRID)
    ys = np.linspace(extent[2], extent[3], GRID)
    return np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)


def _window(points: np.ndarray, margin: float = 0.1) -> tuple[float, float, float, float]:
    """The bounding box of ``points``, widened by ``margin`` of its size on each side."""
    lo, hi = points.min(0), points.max(0)
    pad = margin * (hi - lo)
    return (lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1])


def panels(label: str, run: runs.Run, points: np.ndarray, accuracy: float) -> list[RegionPanel]:
    """The run's regions in the input plane and, if its preprocessing maps the points, in its feature plane."""
    extent = _window(points)
    grid = _grid(extent)
    title = f"{label}: {100 * accuracy:.1f} % test"
    classes = _classes(run, _features(run, grid)).reshape(GRID, GRID)
    out = [RegionPanel(f"{title}\nin the (x, y) plane", classes, extent, points)]
    feats = _features(run, points)
    if not np.array_equal(feats, points):
        f_extent = _window(feats)
        axes = ("r", "θ") if run.config.data.pp_eval == "polar" else ("feature 0", "feature 1")
        f_classes = _classes(run, _grid(f_extent)).reshape(GRID, GRID)
        out.append(RegionPanel(f"{title}\nin its feature plane ({', '.join(axes)})", f_classes, f_extent, feats, axes))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True, help="LABEL=WORKDIR,WORKDIR,...")
    parser.add_argument("--out", default="docs/circles_polar.png")
    args = parser.parse_args()
    rows, figure = [], []
    for item in args.runs:
        label, _, workdirs = item.partition("=")
        summaries = [json.loads((Path(w) / "summary.json").read_text()) for w in workdirs.split(",")]
        acc = {role: 100 * np.array([s[role]["accuracy"] for s in summaries]) for role in ("test", "validation")}
        std = {role: a.std(ddof=1) if len(a) > 1 else 0.0 for role, a in acc.items()}
        wall = np.mean([s["wall_time_s"] for s in summaries])
        rows.append(
            f"| {label} | {len(summaries)} | {acc['test'].mean():.2f} ± {std['test']:.2f} "
            f"| {acc['validation'].mean():.2f} ± {std['validation']:.2f} | {wall:.0f} |"
        )
        run = runs.load_run(workdirs.split(",")[0])
        test = data.load_arrays(run.config.data.name, "test")
        figure += panels(label, run, test["image"], summaries[0]["test"]["accuracy"])
    print("| features | seeds | test accuracy (%) | validation accuracy (%) | wall time a run (s) |")
    print("| :-- | --: | --: | --: | --: |")
    print("\n".join(rows))
    meta = data.meta(data.get(run.config.data.name))
    plot_decision_regions(figure, test["label"], meta.class_names, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

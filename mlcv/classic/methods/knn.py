"""The kNN method on raw pixels: (k, p) chosen on validation, test evaluated once (mlcv.classic.algorithms.knn)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from mlcv import data
from mlcv.classic.algorithms.knn import grid_accuracy, predict
from mlcv.classic.base import FittedMethod, LogFn
from mlcv.config import ConfigError


def flat_images(split: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """A split's images as float32 rows and its labels."""
    return split["image"].reshape(len(split["label"]), -1).astype(np.float32), split["label"]


class KNN(FittedMethod):
    """kNN classification of a dataset's raw pixels; (k, p) chosen on validation, test evaluated once.

    Config: ``data.name`` / ``data.data_dir``; ``knn.k_grid`` and ``knn.p_grid``
    (the grid), ``knn.k`` / ``knn.p`` (a value there replaces that grid by
    itself), ``knn.batch_size`` (queries per distance chunk) and
    ``knn.boundary_resolution`` (grid points a side of the decision-boundary plot).
    """

    def __init__(self, config: ml_collections.ConfigDict):
        super().__init__(config)
        knn = config.knn
        self.ks = [int(knn.k)] if knn.get("k") is not None else [int(k) for k in knn.k_grid]
        self.ps = [float(knn.p)] if knn.get("p") is not None else [float(p) for p in knn.p_grid]
        k_key = "config.knn.k" if knn.get("k") is not None else "config.knn.k_grid"
        p_key = "config.knn.p" if knn.get("p") is not None else "config.knn.p_grid"
        if not self.ks or any(k < 1 for k in self.ks):
            raise ConfigError(f"{k_key} must hold positive integers, got {self.ks}")
        if not self.ps or any(not p > 0 for p in self.ps):
            raise ConfigError(f"{p_key} must hold values p > 0 (inf for l_inf), got {self.ps}")
        if knn.batch_size < 1:
            raise ConfigError(f"config.knn.batch_size must be >= 1, got {knn.batch_size}")
        if knn.boundary_resolution < 2:
            raise ConfigError(f"config.knn.boundary_resolution must be >= 2, got {knn.boundary_resolution}")
        self.splits = {
            role: flat_images(data.load_arrays(config.data.name, role, data_dir=config.data.get("data_dir")))
            for role in ("train", "validation", "test")
        }
        n_train = len(self.splits["train"][1])
        if max(self.ks) > n_train:
            raise ConfigError(f"{k_key}: k={max(self.ks)} exceeds the {n_train} training images")
        self.k, self.p, self.grid = self.ks[0], self.ps[0], None

    def fit(self, log: LogFn) -> dict[str, Any]:
        """Scores every (k, p) on validation, logs one record per grid point, keeps the best.

        The best is the highest validation accuracy; among equals, the first
        in grid order (``p_grid`` outer, ``k_grid`` inner, as listed).
        """
        bs = self.config.knn.batch_size
        self.grid = grid_accuracy(self.splits["train"], self.splits["validation"], self.ks, self.ps, bs)
        step = 0
        for i, p in enumerate(self.ps):
            for j, k in enumerate(self.ks):
                log(step, {"k": k, "p": p, "validation/accuracy": self.grid[i, j]})
                step += 1
        i, j = np.unravel_index(np.argmax(self.grid), self.grid.shape)
        self.k, self.p = self.ks[j], self.ps[i]
        return {"k": self.k, "p": self.p, "validation_accuracy": float(self.grid[i, j]), "grid_points": step}

    def evaluate(self, role: str) -> dict[str, Any]:
        """Accuracy of the chosen (k, p) on ``role``'s split, the training split as references."""
        x, y = self.splits[role]
        train_x, train_y = self.splits["train"]
        pred = predict(train_x, train_y, x, self.k, self.p, self.config.knn.batch_size)
        return {"accuracy": float(np.mean(pred == y))}

    def plot(self, plots_dir: Path) -> None:
        """``knn_grid.png`` (validation accuracy over the grid) and ``knn_boundary.png`` (2-D PCA boundary)."""
        plot_grid(self.grid, self.ks, self.ps, (self.k, self.p), plots_dir / "knn_grid.png")
        train_x, train_y = self.splits["train"]
        cfg = self.config.knn
        plot_boundary(
            train_x, train_y, self.k, self.p, cfg.boundary_resolution, cfg.batch_size, plots_dir / "knn_boundary.png"
        )

    def headline(self, summary: dict[str, Any]) -> str:
        """``test accuracy 98.06 % (k=1, p=2 chosen on validation)``; without "chosen" when the grid is one point."""
        chosen = " chosen on validation" if len(self.ks) * len(self.ps) > 1 else ""
        return f"test accuracy {100 * summary['test']['accuracy']:.2f} % (k={self.k}, p={self.p:g}{chosen})"


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display), imported on first use: runs without plots skip it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pca_2d(x: np.ndarray) -> np.ndarray:
    """Projection of the rows of ``x`` on their first two principal axes (centred; SVD)."""
    centred = x - x.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def plot_grid(grid: np.ndarray, ks: list[int], ps: list[float], chosen: tuple[int, float], path: Path) -> None:
    """Validation accuracy against k, one line per p, the chosen point circled."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, p in enumerate(ps):
        ax.plot(ks, 100 * grid[i], marker=".", label=f"p={p:g}")
    ax.plot([chosen[0]], [100 * grid[ps.index(chosen[1]), ks.index(chosen[0])]], "o", mfc="none", ms=12, c="k")
    ax.set_xlabel("k")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"kNN grid search: chosen k={chosen[0]}, p={chosen[1]:g}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_boundary(x: np.ndarray, y: np.ndarray, k: int, p: float, resolution: int, batch_size: int, path: Path) -> None:
    """The kNN decision regions of the 2-D PCA projection of ``x``, with its points on top.

    The classifier here is kNN on the two projected coordinates (same k and
    p), so the regions are what kNN does in 2-D, not a slice of the
    full-dimensional classifier.
    """
    plt = pyplot()

    z = pca_2d(x).astype(np.float32)
    lo, hi = z.min(0) - 1, z.max(0) + 1
    g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution))
    mesh = np.stack([g0.ravel(), g1.ravel()], 1).astype(np.float32)
    regions = predict(z, y, mesh, k, p, batch_size).reshape(g0.shape)
    classes = np.unique(y)
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.contourf(
        g0, g1, np.searchsorted(classes, regions), levels=np.arange(len(classes) + 1) - 0.5, cmap=cmap, alpha=0.35
    )
    ax.scatter(z[:, 0], z[:, 1], c=np.searchsorted(classes, y), cmap=cmap, s=6, vmin=-0.5, vmax=len(classes) - 0.5)
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    ax.set_title(f"kNN (k={k}, p={p:g}) on the 2-D PCA projection of the training split")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

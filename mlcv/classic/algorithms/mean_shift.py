"""Weighted mean shift: the local modes of a kernel density estimate, batched over point sets.

Every seed climbs the density sum_j w_j K(|x - x_j| / h) by moving to the kernel-weighted mean of
the points around it, until it moves less than ``tol``. The Gaussian kernel K(r) = exp(-r^2 / 2) is
the one used for joint proposals in Shotton et al. 2011; the flat kernel (1 within the bandwidth,
as in scikit-learn's ``MeanShift``) is there too. Point sets of a batch are padded to one size, with
zero weights on the padding, so many images and body parts climb at once.
"""

from __future__ import annotations

import numpy as np


def _kernel(d2: np.ndarray, bandwidth: float, kernel: str) -> np.ndarray:
    if kernel == "gaussian":
        return np.exp(-0.5 * d2 / bandwidth**2)
    if kernel == "flat":
        return (d2 <= bandwidth**2).astype(d2.dtype)
    raise ValueError(f"kernel must be 'gaussian' or 'flat', got {kernel!r}")


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared distances (..., S, M) between a (..., S, D) and b (..., M, D)."""
    # |a|^2 + |b|^2 - 2 a.b: a matrix product rather than an (S, M, D) difference array.
    d2 = (a**2).sum(-1)[..., :, None] + (b**2).sum(-1)[..., None, :] - 2.0 * (a @ np.swapaxes(b, -1, -2))
    return np.maximum(d2, 0.0)


def density(at: np.ndarray, points: np.ndarray, weights: np.ndarray, bandwidth: float, kernel: str) -> np.ndarray:
    """Unnormalised kernel density sum_j w_j K at the locations ``at`` (..., S, D): (..., S)."""
    return (_kernel(_sq_dist(at, points), bandwidth, kernel) * weights[..., None, :]).sum(-1)


def mean_shift(
    points: np.ndarray,
    weights: np.ndarray,
    seeds: np.ndarray,
    bandwidth: float,
    kernel: str = "gaussian",
    max_iter: int = 300,
    tol: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Moves every seed to a mode of the weighted kernel density of its point set.

    Args:
      points: (..., M, D) points of each set of the batch.
      weights: (..., M) non-negative weights (0 on padding).
      seeds: (..., S, D) starting locations.
      bandwidth: kernel scale h (the radius of the flat kernel).
      kernel: ``gaussian`` or ``flat``.
      max_iter: most steps.
      tol: a seed stops once it moves at most this far (default 1e-3 * bandwidth, as scikit-learn).

    Returns:
      modes (..., S, D) and the density at each (..., S).
    """
    tol = 1e-3 * bandwidth if tol is None else tol
    x = np.asarray(seeds, np.float64).copy()
    points = np.asarray(points, np.float64)
    weights = np.asarray(weights, np.float64)
    moving = np.ones(x.shape[:-1], bool)
    for _ in range(max_iter):  # iterations, every seed of every set at once
        k = _kernel(_sq_dist(x, points), bandwidth, kernel) * weights[..., None, :]
        total = k.sum(-1, keepdims=True)
        new = np.where(total > 0, (k @ points) / np.where(total > 0, total, 1.0), x)
        new = np.where(moving[..., None], new, x)
        moving &= np.linalg.norm(new - x, axis=-1) > tol
        x = new
        if not moving.any():
            break
    return x, density(x, points, weights, bandwidth, kernel)


def distinct_modes(modes: np.ndarray, score: np.ndarray, bandwidth: float) -> tuple[np.ndarray, np.ndarray]:
    """Modes (S, D) of one set with near-duplicates removed, strongest first.

    Walks the modes by decreasing ``score`` and drops each one within ``bandwidth`` of a mode kept
    before it (scikit-learn's rule for ``MeanShift.cluster_centers_``).
    """
    order = np.argsort(-score, kind="stable")
    modes, score = modes[order], score[order]
    near = _sq_dist(modes, modes) <= bandwidth**2
    dropped = np.zeros(len(modes), bool)
    kept = []
    for i in range(len(modes)):  # over modes (a few dozen seeds), like non-maximum suppression
        if not dropped[i]:
            kept.append(i)
            dropped |= near[i]
    return modes[kept], score[kept]


def strongest_mode(
    points: np.ndarray,
    weights: np.ndarray,
    num_seeds: int,
    bandwidth: float,
    kernel: str = "gaussian",
    max_iter: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """The highest-density mode of each weighted point set: (..., D) and its density (...).

    Seeds are the ``num_seeds`` heaviest points of each set.
    """
    s = min(num_seeds, points.shape[-2])
    top = np.argsort(-weights, axis=-1, kind="stable")[..., :s]
    seeds = np.take_along_axis(points, top[..., None], -2)
    modes, dens = mean_shift(points, weights, seeds, bandwidth, kernel, max_iter)
    best = np.argmax(dens, -1)
    return np.take_along_axis(modes, best[..., None, None], -2)[..., 0, :], np.take_along_axis(
        dens, best[..., None], -1
    )[..., 0]

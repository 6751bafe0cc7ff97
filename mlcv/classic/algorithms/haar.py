"""Haar-like features: enumeration in a window, evaluation on many windows, and the detector scaled to any size.

A feature is up to four rectangles with weights; its value is the weighted sum
of the pixels under them, each rectangle sum four look-ups in an integral
image. The weights are balanced (they sum to zero over the area), so a
feature ignores the window's mean brightness, and dividing by the window's
standard deviation makes it ignore contrast too (Viola and Jones' lighting
normalisation).

Types (``(x, y, w, h)`` in units of the feature's base cell, weight):

* ``two_h``  left minus right;   ``two_v`` top minus bottom.
* ``three_h`` / ``three_v``  outer cells +1, centre cell -2.
* ``four``  diagonal cells +1, off-diagonal -1.

Every type at every unit size and position in a 24x24 window gives the
well-known 162,336 features; ``position_step`` and ``size_step`` thin that out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import scipy.sparse

from mlcv.ops.integral import integral_image, window_mean_std

# name -> (cells across, cells down, [(cx, cy, weight), ...]) with unit cells.
_TYPES: dict[str, tuple[int, int, list[tuple[int, int, float]]]] = {
    "two_h": (2, 1, [(0, 0, 1.0), (1, 0, -1.0)]),
    "two_v": (1, 2, [(0, 0, 1.0), (0, 1, -1.0)]),
    "three_h": (3, 1, [(0, 0, 1.0), (1, 0, -2.0), (2, 0, 1.0)]),
    "three_v": (1, 3, [(0, 0, 1.0), (0, 1, -2.0), (0, 2, 1.0)]),
    "four": (2, 2, [(0, 0, 1.0), (1, 0, -1.0), (0, 1, -1.0), (1, 1, 1.0)]),
}
TYPES = tuple(_TYPES)


@dataclasses.dataclass(frozen=True)
class HaarFeatures:
    """A set of ``F`` Haar features of one window size.

    Attributes:
      window: side of the square window the coordinates refer to.
      kind: ``(F,)`` index into :data:`TYPES`.
      rects: ``(F, 4, 4)`` int rectangles ``(x, y, w, h)``; unused slots are all zero.
      weights: ``(F, 4)`` float weights; zero for unused slots.
    """

    window: int
    kind: np.ndarray
    rects: np.ndarray
    weights: np.ndarray

    def __len__(self) -> int:
        return len(self.kind)

    def subset(self, index) -> HaarFeatures:
        """The features at ``index`` (an int array or a slice)."""
        index = np.atleast_1d(np.arange(len(self))[index])
        return HaarFeatures(self.window, self.kind[index], self.rects[index], self.weights[index])

    def matrix(self) -> scipy.sparse.csr_matrix:
        """The features as a sparse ``(F, (window + 1) ** 2)`` map from a flattened padded integral image."""
        offsets, coeffs = corners(self, 1.0)
        f = np.repeat(np.arange(len(self)), offsets.shape[1])
        side = self.window + 1
        # duplicate corners of adjacent rectangles are summed by the conversion to CSR
        return scipy.sparse.coo_matrix(
            (coeffs.ravel(), (f, offsets[..., 0].ravel() * side + offsets[..., 1].ravel())),
            shape=(len(self), side * side),
        ).tocsr()


def enumerate_features(
    window: int = 24, types: Sequence[str] = TYPES, *, position_step: int = 1, size_step: int = 1
) -> HaarFeatures:
    """Every feature of ``types`` inside a ``window`` x ``window`` window.

    Cell sizes run over ``1, 1 + size_step, ...`` in each direction independently
    and positions over ``0, position_step, ...`` along each axis, keeping only
    features that fit inside the window.
    """
    unknown = [t for t in types if t not in _TYPES]
    if unknown:
        raise ValueError(f"unknown Haar feature types {unknown}; valid: {', '.join(TYPES)}")
    kinds, rects, weights = [], [], []
    for t in types:
        nx, ny, cells = _TYPES[t]
        cw, ch = np.meshgrid(np.arange(1, window // nx + 1, size_step), np.arange(1, window // ny + 1, size_step))
        cw, ch = cw.ravel(), ch.ravel()
        # every (cell size, position) pair that fits; vectorised over positions per cell size
        for w, h in zip(cw, ch, strict=True):
            xs = np.arange(0, window - nx * w + 1, position_step)
            ys = np.arange(0, window - ny * h + 1, position_step)
            x, y = (a.ravel() for a in np.meshgrid(xs, ys))
            r = np.zeros((len(x), 4, 4), np.int32)
            wt = np.zeros((len(x), 4))
            for k, (cx, cy, weight) in enumerate(cells):
                r[:, k] = np.stack([x + cx * w, y + cy * h, np.full_like(x, w), np.full_like(x, h)], axis=1)
                wt[:, k] = weight
            kinds.append(np.full(len(x), TYPES.index(t), np.int8))
            rects.append(r)
            weights.append(wt)
    return HaarFeatures(window, np.concatenate(kinds), np.concatenate(rects), np.concatenate(weights))


def corners(features: HaarFeatures, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Integral-image look-ups of the features scaled by ``scale``: ``offsets (F, 16, 2)`` (dy, dx), ``coeffs (F, 16)``.

    The rectangle corners are scaled and rounded (shared edges stay shared), the
    first rectangle's weight is re-balanced so that the rounded feature still
    sums to zero over the area, and the coefficients are divided by the growth
    of the feature's area, so that a feature of a window ``scale`` times larger
    has the value it had at the training size. At ``scale=1`` nothing changes.
    """
    x0 = np.rint(features.rects[..., 0] * scale).astype(np.int64)
    y0 = np.rint(features.rects[..., 1] * scale).astype(np.int64)
    x1 = np.rint((features.rects[..., 0] + features.rects[..., 2]) * scale).astype(np.int64)
    y1 = np.rint((features.rects[..., 1] + features.rects[..., 3]) * scale).astype(np.int64)
    used = features.weights != 0
    area0 = features.rects[..., 2] * features.rects[..., 3] * used
    area = (x1 - x0) * (y1 - y0) * used
    w = features.weights.copy()
    # rebalance: w_0 A_0 = -sum_{k>0} w_k A_k, with the rounded areas
    w[:, 0] = -(w[:, 1:] * area[:, 1:]).sum(1) / np.maximum(area[:, 0], 1)
    growth = (np.abs(w) * area).sum(1) / np.maximum((np.abs(features.weights) * area0).sum(1), 1e-12)
    w = w / np.where(growth > 0, growth, 1.0)[:, None]
    dy = np.stack([y1, y0, y1, y0], axis=-1).reshape(len(features), 16)
    dx = np.stack([x1, x1, x0, x0], axis=-1).reshape(len(features), 16)
    sign = np.array([1.0, -1.0, -1.0, 1.0])
    coeffs = (w[..., None] * sign).reshape(len(features), 16)
    return np.stack([dy, dx], axis=-1), coeffs


def window_stats(windows: np.ndarray, *, min_std: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Padded integral images ``(N, S + 1, S + 1)`` and floored pixel standard deviations ``(N,)`` of square windows."""
    windows = np.asarray(windows, dtype=np.float64)
    ii = integral_image(windows, pad=True)
    ii2 = integral_image(windows**2, pad=True)
    s = windows.shape[-1]
    _, std = window_mean_std(ii, ii2, 0, 0, s, s, min_std=min_std)
    return ii, std


def feature_values(
    features: HaarFeatures, ii: np.ndarray, std: np.ndarray | None = None, *, chunk: int = 8192
) -> np.ndarray:
    """Values ``(F, N)`` of every feature on every window, from the windows' padded integral images ``(N, S+1, S+1)``.

    With ``std`` the values are divided by each window's standard deviation.
    Computed as one sparse product per chunk of features.
    """
    ii_flat = ii.reshape(len(ii), -1).T  # (P, N)
    out = np.empty((len(features), len(ii)), np.float64)
    for start in range(0, len(features), chunk):
        out[start : start + chunk] = features.subset(slice(start, start + chunk)).matrix() @ ii_flat
    if std is not None:
        out /= std[None, :]
    return out


def values_at(
    features: HaarFeatures, ii: np.ndarray, x0: np.ndarray, y0: np.ndarray, scale: float, std: np.ndarray
) -> np.ndarray:
    """Normalised values ``(P, F)`` of ``features`` scaled by ``scale`` in the windows at ``(x0, y0)`` of one image.

    ``ii`` is the image's padded integral image ``(H + 1, W + 1)``, ``std`` the
    windows' pixel standard deviations. This is the detector scaled rather than
    the image resized: the same look-ups at scaled offsets.
    """
    offsets, coeffs = corners(features, scale)
    width = ii.shape[1]
    flat = ii.reshape(-1)
    base = np.asarray(y0, np.int64) * width + np.asarray(x0, np.int64)
    index = base[:, None, None] + (offsets[..., 0] * width + offsets[..., 1])[None]
    return (flat[index] * coeffs[None]).sum(-1) / std[:, None]

"""Stereo metrics: bad-k rate and end-point error over the pixels with ground truth.

Conventions: disparity maps are float arrays with NaN for "no estimate" (or
"no ground truth"). A pixel is *valid* where the ground truth is finite and the
optional ``mask`` (e.g. non-occluded pixels) holds.

- ``bad_rate(k)``: the fraction of valid pixels whose estimate is missing or off
  by more than ``k`` pixels. A missing estimate counts as wrong, so a method
  cannot improve its score by declining to answer.
- ``end_point_error``: the mean ``|d - d_gt|`` over valid pixels that have an
  estimate (for disparities the end-point error of a 1-D flow), with the
  ``density`` (fraction of valid pixels with an estimate) beside it.
- ``end_point_error_filled``: the same over all valid pixels after missing
  estimates are filled from their row (:func:`mlcv.ops.stereo.fill_background`).
"""

from __future__ import annotations

import numpy as np

from mlcv.ops.stereo import fill_background


def _valid(gt: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    valid = np.isfinite(gt)
    if mask is not None:
        valid &= np.asarray(mask, bool)
    return valid


def bad_rate(pred: np.ndarray, gt: np.ndarray, threshold: float = 2.0, mask: np.ndarray | None = None) -> float:
    """Fraction of valid pixels whose estimate is missing or has ``|pred - gt| > threshold``."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    valid = _valid(gt, mask)
    if not valid.any():
        return float("nan")
    with np.errstate(invalid="ignore"):
        good = np.abs(pred - gt) <= threshold  # False where pred is NaN
    return float((valid & ~good).sum() / valid.sum())


def density(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Fraction of valid pixels that have an estimate."""
    valid = _valid(np.asarray(gt, np.float64), mask)
    return float((valid & np.isfinite(pred)).sum() / valid.sum()) if valid.any() else float("nan")


def end_point_error(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean ``|pred - gt|`` over valid pixels with an estimate (NaN if there are none)."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    both = _valid(gt, mask) & np.isfinite(pred)
    return float(np.abs(pred - gt)[both].mean()) if both.any() else float("nan")


def end_point_error_filled(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean ``|pred - gt|`` over all valid pixels, missing estimates filled from the nearest ones on their row.

    A row with no estimate at all stays missing; such pixels are left out.
    """
    filled = np.asarray(fill_background(np.asarray(pred, np.float32)), np.float64)
    return end_point_error(filled, gt, mask)


def summarize(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """The usual table row, in percent and pixels: bad-1/2/4 %, EPE, filled EPE and density %."""
    return {
        "bad1_pct": 100 * bad_rate(pred, gt, 1.0, mask),
        "bad2_pct": 100 * bad_rate(pred, gt, 2.0, mask),
        "bad4_pct": 100 * bad_rate(pred, gt, 4.0, mask),
        "epe_px": end_point_error(pred, gt, mask),
        "epe_filled_px": end_point_error_filled(pred, gt, mask),
        "density_pct": 100 * density(pred, gt, mask),
    }

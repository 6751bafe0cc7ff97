"""Stereo pairs with ground-truth disparity: the Middlebury "Motorcycle" pair of scikit-image and a generator.

``motorcycle()`` is ``skimage.data.stereo_motorcycle()`` (ships with
scikit-image, no network), the Middlebury 2014 pair downscaled 4x by
scikit-image. What it returns, checked here rather than taken from its
docstring:

- ground truth is the LEFT image's disparity in pixels of the 500 x 741 images
  (the full-resolution values divided by 4; 7.2 to 59.9), and a left pixel
  ``(y, x)`` matches the right pixel ``(y, x - d)`` (the mean absolute grey
  difference is 7.8 that way and 45 the other way);
- pixels without ground truth are ``+inf`` (7.3 %), not NaN as its docstring
  says; here they become NaN.

Calibration of the downscaled pair (scikit-image's docstring, which is the
Middlebury ``calib.txt`` divided by 4): focal length 994.978 px, baseline
193.001 mm, ``doffs`` (x-difference of the principal points) 31.086 px, so
the depth in mm is ``z = b f / (d + doffs)``.

``synthetic_pair()`` draws a random-dot stereogram of fronto-parallel planes
from a seed, with its exact disparity and occlusion maps.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# ITU-R BT.601 luma, the same weights as mlcv.ops.stereo.rgb_to_grey and OpenCV's COLOR_RGB2GRAY.
_LUMA = np.array([0.299, 0.587, 0.114])

MOTORCYCLE_CALIBRATION = {"focal_px": 994.978, "baseline_mm": 193.001, "doffs_px": 31.086}


def _block_mean(x: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor x factor`` blocks (edge rows and columns that do not fill a block are dropped)."""
    h, w = (x.shape[0] // factor) * factor, (x.shape[1] // factor) * factor
    x = x[:h, :w]
    return x.reshape(h // factor, factor, w // factor, factor, *x.shape[2:]).mean(axis=(1, 3))


def motorcycle(downscale: int = 1) -> dict[str, Any]:
    """The Middlebury Motorcycle pair as float32 grey images in [0, 255] with NaN-marked ground truth.

    Args:
      downscale: an integer factor for quick runs; images and ground truth are
        block means (a block with any pixel without ground truth has none),
        disparities and the calibration's pixel units are divided by it.

    Returns:
      ``left``, ``right`` (``(H, W)`` float32 grey), ``disparity`` (``(H, W)``
      float32, NaN where unknown), ``calibration`` (``focal_px``, ``baseline_mm``,
      ``doffs_px``).
    """
    if int(downscale) != downscale or downscale < 1:
        raise ValueError(f"downscale must be an integer >= 1, got {downscale}")
    from skimage import data

    left, right, disp = data.stereo_motorcycle()
    disp = np.where(np.isfinite(disp), disp, np.nan).astype(np.float64)
    left, right = (img.astype(np.float64) @ _LUMA for img in (left, right))
    calib = dict(MOTORCYCLE_CALIBRATION)
    if downscale > 1:
        left, right = _block_mean(left, downscale), _block_mean(right, downscale)
        disp = _block_mean(disp, downscale) / downscale  # a NaN anywhere in a block makes its mean NaN
        calib["focal_px"] /= downscale
        calib["doffs_px"] /= downscale
    return {
        "left": left.astype(np.float32),
        "right": right.astype(np.float32),
        "disparity": disp.astype(np.float32),
        "calibration": calib,
    }


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise rescaled to zero mean and unit std."""
    from scipy import ndimage

    x = rng.standard_normal(shape)
    if sigma > 0:
        x = ndimage.gaussian_filter(x, sigma, mode="wrap")
    return (x - x.mean()) / x.std()


def synthetic_pair(
    seed: int,
    height: int = 120,
    width: int = 160,
    *,
    planes: int = 4,
    min_disparity: float = 4.0,
    max_disparity: float = 24.0,
    texture_sigma: float = 1.0,
    noise_std: float = 2.0,
) -> dict[str, np.ndarray]:
    """A random-dot stereogram: a background plane and ``planes`` rectangles in front of it.

    Each surface is a fronto-parallel plane with its own disparity (uniform in
    ``[min_disparity, max_disparity]``, real-valued; nearer rectangles are drawn over
    farther ones), its own smoothed-noise texture, contrast and brightness. The left
    image shows each surface's texture at ``(y, x)``, the right image at
    ``(y, x + d)`` (linear interpolation for fractional ``d``), so the left pixel
    ``(y, x)`` matches the right pixel ``(y, x - d)``; then both images get
    independent Gaussian noise of std ``noise_std`` (grey levels of 0-255).

    Returns:
      ``left``, ``right`` (``(H, W)`` float32 in about [0, 255]), ``disparity`` (the
      left image's exact disparity, float32), ``occluded`` (bool: the left pixel's
      match is hidden by a nearer surface or falls outside the right image), and the
      same two of the right view: ``disparity_right`` (the right pixel ``(y, x)``
      matches the left pixel ``(y, x + d)``) and ``occluded_right``. A left-right
      mirror of the pair swaps the views, so it needs both disparities.
    """
    if not 0 <= min_disparity <= max_disparity:
        raise ValueError(f"need 0 <= min_disparity <= max_disparity, got {min_disparity}, {max_disparity}")
    rng = np.random.default_rng(seed)
    pad = int(np.ceil(max_disparity)) + 2
    disps = np.sort(rng.uniform(min_disparity, max_disparity, planes + 1))  # [0] is the background, the farthest
    ys, xs = np.mgrid[0:height, 0:width]
    # Masks in left-image coordinates, back to front: the background covers all.
    masks = [np.ones((height, width), bool)]
    for _ in range(planes):
        h = int(rng.integers(height // 5, height // 2))
        w = int(rng.integers(width // 6, int(width / 2.5)))
        y0, x0 = int(rng.integers(0, height - h)), int(rng.integers(0, width - w))
        masks.append((ys >= y0) & (ys < y0 + h) & (xs >= x0) & (xs < x0 + w))
    left = np.zeros((height, width))
    right = np.zeros((height, width))
    disparity = np.zeros((height, width))
    layer_left = np.zeros((height, width), int)
    layer_right = np.zeros((height, width), int)
    for k, (mask, d) in enumerate(zip(masks, disps, strict=True)):
        texture = 128.0 + rng.uniform(15.0, 50.0) * _smooth_noise(rng, (height, width + pad), texture_sigma)
        texture += rng.uniform(-30.0, 30.0)
        left = np.where(mask, texture[:, :width], left)
        disparity = np.where(mask, d, disparity)
        layer_left = np.where(mask, k, layer_left)
        # The right pixel (y, x) shows the left-coordinate point x + d of this surface.
        src = xs + d
        i0 = np.floor(src).astype(int)
        frac = src - i0
        sampled = (1.0 - frac) * texture[ys, i0] + frac * texture[ys, i0 + 1]
        # The surface covers the right pixel where its left-coordinate mask holds at x + d (nearest column).
        col = np.clip(np.round(src).astype(int), 0, width - 1)
        covers = mask[ys, col] & (np.round(src) < width) if k else np.ones_like(mask)
        right = np.where(covers, sampled, right)
        layer_right = np.where(covers, k, layer_right)
    left += noise_std * rng.standard_normal(left.shape)
    right += noise_std * rng.standard_normal(right.shape)
    target = np.round(xs - disparity).astype(int)
    seen = (target >= 0) & (layer_right[ys, np.clip(target, 0, width - 1)] == layer_left)
    # The right view's disparity is that of the surface it shows; its pixel x matches the left pixel x + d.
    disparity_right = disps[layer_right]
    target_right = np.round(xs + disparity_right).astype(int)
    seen_right = (target_right < width) & (layer_left[ys, np.clip(target_right, 0, width - 1)] == layer_right)
    return {
        "left": left.astype(np.float32),
        "right": right.astype(np.float32),
        "disparity": disparity.astype(np.float32),
        "occluded": ~seen,
        "disparity_right": disparity_right.astype(np.float32),
        "occluded_right": ~seen_right,
    }

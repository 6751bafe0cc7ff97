"""Region features and similarities of selective search (Uijlings et al. 2013, §3.2), over a label image.

- colour: a 25-bin histogram of each channel over [0, 1], the channels' histograms concatenated and L1-normalised;
- texture: for each channel, the first Gaussian derivative (sigma 1) steered to 8 directions (0, 45, ..., 315
  degrees) and half-wave rectified, a 10-bin histogram of each response over [0, its largest value in the
  image], all concatenated and L1-normalised;
- similarity of regions ``i`` and ``j`` (each term in [0, 1], summed over the chosen terms):
  colour and texture: histogram intersection ``sum_k min(h_i[k], h_j[k])``;
  size: ``1 - (size_i + size_j) / size_image``; fill: ``1 - (size(BB_ij) - size_i - size_j) / size_image``,
  ``BB_ij`` the tight box around both.

The paper's texture descriptor is "Gaussian derivatives in eight orientations", with no word on signs or bin
ranges: rectified steered derivatives are the usual reading (a derivative and its opposite direction are two
of the eight), and the per-image bin range is our choice. The ``rgi`` space is the paper's rgI: ``r = R / (R +
G + B)``, ``g = G / (R + G + B)`` and intensity ``I``; ``i`` is intensity alone. Every space is scaled to [0, 1]
for the histograms and for Felzenszwalb's ``k``: HSV as scikit-image gives it, Lab as ``L / 100``, ``(a + 128) /
255``, ``(b + 128) / 255`` (our choice; the paper does not say).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

COLOR_SPACES = ("rgb", "hsv", "lab", "rgi", "i")
SIMILARITY_TERMS = ("color", "texture", "size", "fill")
COLOR_BINS = 25
TEXTURE_BINS = 10
ORIENTATIONS = 8


class Regions(NamedTuple):
    """Features of regions ``0 .. n - 1``: ``size`` ``[n]`` pixels, ``boxes`` ``[n, 4]`` ``(ymin, xmin, ymax, xmax)``
    (max exclusive), ``color`` ``[n, C * 25]`` and ``texture`` ``[n, C * 8 * 10]`` L1-normalised histograms."""

    size: np.ndarray
    boxes: np.ndarray
    color: np.ndarray
    texture: np.ndarray


def color_space(image: np.ndarray, name: str) -> np.ndarray:
    """The uint8 RGB ``image`` in colour space ``name`` as float64 ``[H, W, C]``, each channel scaled to [0, 1]."""
    rgb = np.asarray(image, np.float64) / 255.0
    if name == "rgb":
        return rgb
    if name == "hsv":
        from skimage.color import rgb2hsv  # deferred: scikit-image's import costs ~0.3 s

        return rgb2hsv(rgb)
    if name == "lab":
        from skimage.color import rgb2lab

        lab = rgb2lab(rgb)
        # L is in [0, 100]; a and b of sRGB colours lie within [-128, 127].
        return np.clip((lab + [0.0, 128.0, 128.0]) / [100.0, 255.0, 255.0], 0.0, 1.0)
    intensity = rgb.mean(axis=2, keepdims=True)
    if name == "i":
        return intensity
    if name == "rgi":
        total = rgb.sum(axis=2, keepdims=True)
        # Black has no chromaticity: give it the grey point r = g = 1/3.
        rg = np.divide(rgb[..., :2], total, out=np.full(rgb.shape[:2] + (2,), 1 / 3), where=total > 0)
        return np.concatenate([rg, intensity], axis=2)
    raise ValueError(f"colour space {name!r}: choose from {', '.join(COLOR_SPACES)}")


def texture_responses(channels: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Rectified first Gaussian derivatives of each channel in 8 directions: float64 ``[C * 8, H, W]``.

    Direction ``o`` (angle ``o * 45`` degrees, x to the right, y down) of channel ``c`` is plane ``c * 8 + o``:
    ``max(0, cos(a) d/dx + sin(a) d/dy)`` of the channel smoothed by a Gaussian of ``sigma``.
    """
    from scipy.ndimage import gaussian_filter1d

    planes = np.moveaxis(channels, 2, 0)
    # Separable: smooth along one axis, differentiate along the other, all channels in one call per pass.
    dx = gaussian_filter1d(gaussian_filter1d(planes, sigma, axis=1), sigma, axis=2, order=1)
    dy = gaussian_filter1d(gaussian_filter1d(planes, sigma, axis=2), sigma, axis=1, order=1)
    angles = np.arange(ORIENTATIONS) * (2 * np.pi / ORIENTATIONS)
    # Planes first, so that each elementwise pass runs over whole images rather than 8-long rows.
    steered = dx[:, None] * np.cos(angles)[:, None, None] + dy[:, None] * np.sin(angles)[:, None, None]
    return np.maximum(steered, 0.0, out=steered).reshape(-1, *channels.shape[:2])


def pixel_bins(values: np.ndarray, bins: int, top: np.ndarray | None = None) -> np.ndarray:
    """The histogram bin of each pixel's value in each plane ``d`` of ``values`` ``[D, H, W]``: int64 ``[D, H, W]``.

    Plane ``d`` has ``bins`` equal bins over ``[0, top[d]]`` (default: the plane's largest value), numbered
    ``d * bins .. d * bins + bins - 1``; a value equal to ``top`` goes to the last bin, and a plane of zeros to its
    first. Independent of the regions, so one colour space's bins serve all its segmentations.
    """
    top = values.max(axis=(1, 2)) if top is None else np.asarray(top, np.float64)
    scale = bins / np.where(top > 0, top, 1.0)
    index = (values * scale[:, None, None]).astype(np.int64)
    np.clip(index, 0, bins - 1, out=index)
    index += (np.arange(len(values)) * bins)[:, None, None]
    return index


def image_bins(image: np.ndarray, space: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``image`` in colour ``space`` (:func:`color_space`, ``[H, W, C]``) with its colour and texture
    :func:`pixel_bins` (``[C, H, W]`` and ``[C * 8, H, W]``)."""
    channels = color_space(image, space)
    color = pixel_bins(np.moveaxis(channels, 2, 0), COLOR_BINS, np.ones(channels.shape[2]))
    return channels, color, pixel_bins(texture_responses(channels), TEXTURE_BINS)


def _histograms(labels: np.ndarray, n: int, codes: np.ndarray, width: int) -> np.ndarray:
    """``[n, width]`` L1-normalised counts of each region's ``codes`` (``[D, H, W]`` bin numbers below ``width``)."""
    index = codes + labels * width
    counts = np.bincount(index.ravel(), minlength=n * width).reshape(n, width).astype(np.float64)
    return counts / counts.sum(axis=1, keepdims=True)


def regions(labels: np.ndarray, color_bins: np.ndarray, texture_bins: np.ndarray) -> Regions:
    """Size, box, colour and texture histograms of each region of ``labels`` ``[H, W]`` (``0 .. n - 1``, all used).

    ``color_bins`` ``[C, H, W]`` and ``texture_bins`` ``[C * 8, H, W]``: the :func:`pixel_bins` of the image in a
    colour space (``image_bins``).
    """
    from scipy.ndimage import find_objects

    labels = np.asarray(labels, np.int64)
    n = int(labels.max()) + 1
    size = np.bincount(labels.ravel(), minlength=n).astype(np.float64)
    if (size == 0).any():
        raise ValueError(f"labels must number regions 0 .. n - 1 with none empty; empty: {np.flatnonzero(size == 0)}")
    boxes = np.array([[s[0].start, s[1].start, s[0].stop, s[1].stop] for s in find_objects(labels + 1)], np.float64)
    color = _histograms(labels, n, color_bins, len(color_bins) * COLOR_BINS)
    texture = _histograms(labels, n, texture_bins, len(texture_bins) * TEXTURE_BINS)
    return Regions(size, boxes, color, texture)


def adjacent_pairs(labels: np.ndarray) -> np.ndarray:
    """Pairs ``(i, j)``, ``i < j``, of regions sharing a horizontal or vertical pixel edge: int64 ``[E, 2]``, sorted."""
    labels = np.asarray(labels, np.int64)
    a = np.concatenate([labels[:, :-1].ravel(), labels[:-1, :].ravel()])
    b = np.concatenate([labels[:, 1:].ravel(), labels[1:, :].ravel()])
    differ = a != b
    lo, hi = np.minimum(a[differ], b[differ]), np.maximum(a[differ], b[differ])
    n = int(labels.max()) + 1
    codes = np.unique(lo * n + hi)
    return np.stack([codes // n, codes % n], axis=1)


def histogram_intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``sum_k min(a[..., k], b[..., k])``: 1 for equal L1-normalised histograms, 0 for disjoint ones."""
    return np.minimum(a, b).sum(axis=-1)


def size_similarity(size_i: np.ndarray, size_j: np.ndarray, image_size: float) -> np.ndarray:
    """``1 - (size_i + size_j) / size_image``: small regions merge early."""
    return 1.0 - (size_i + size_j) / image_size


def fill_similarity(
    box_i: np.ndarray, box_j: np.ndarray, size_i: np.ndarray, size_j: np.ndarray, image_size: float
) -> np.ndarray:
    """``1 - (size(BB_ij) - size_i - size_j) / size_image``: regions that fill each other's gaps merge early."""
    lo = np.minimum(box_i[..., :2], box_j[..., :2])
    hi = np.maximum(box_i[..., 2:], box_j[..., 2:])
    box_size = np.prod(hi - lo, axis=-1)
    return 1.0 - (box_size - size_i - size_j) / image_size


def similarity(features: Regions, i: np.ndarray, j: np.ndarray, terms: Sequence[str], image_size: float) -> np.ndarray:
    """The summed similarity terms of regions ``i[p]`` and ``j[p]`` for each ``p``: ``[P]``."""
    total = np.zeros(len(i), np.float64)
    for term in terms:
        if term == "color":
            total += histogram_intersection(features.color[i], features.color[j])
        elif term == "texture":
            total += histogram_intersection(features.texture[i], features.texture[j])
        elif term == "size":
            total += size_similarity(features.size[i], features.size[j], image_size)
        elif term == "fill":
            total += fill_similarity(
                features.boxes[i], features.boxes[j], features.size[i], features.size[j], image_size
            )
        else:
            raise ValueError(f"similarity term {term!r}: choose from {', '.join(SIMILARITY_TERMS)}")
    return total

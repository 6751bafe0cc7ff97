"""Depth-comparison features (Shotton et al. 2011): f(p) = D(p + dp / D(p)) - D(p + dn / D(p)).

The offsets dp and dn are in pixel-metres: dividing them by the depth at p makes a feature cover the
same part of a body near or far from the camera. A probe that falls outside the image reads
``background`` (a large constant), as does a probe on the background, whose depth already holds it.
Everything is vectorised over pixels and features with numpy gathers.
"""

from __future__ import annotations

import numpy as np


def depth_feature(
    depth: np.ndarray,
    pixels: np.ndarray,
    offsets: np.ndarray,
    background: float,
) -> np.ndarray:
    """Values (m, k) of features ``offsets`` at ``pixels``.

    Args:
      depth: (N, H, W) depth images in metres, ``background`` off the body.
      pixels: (m, 3) integer (image, row, column) of each pixel p.
      offsets: (m, k, 4) or (k, 4): (row, column) of dp then of dn, in pixel-metres.
      background: the depth read by probes outside the image.

    Returns:
      f(p) for each pixel and feature, float32.
    """
    n, h, w = depth.shape
    img, row, col = (pixels[:, i][:, None] for i in range(3))
    d = depth[img, row, col]  # (m, 1)
    offsets = np.broadcast_to(offsets, (len(pixels), *offsets.shape[-2:]))

    # The stack flattened, with one more entry holding the background: a probe off its image reads that one.
    flat_depth = np.append(depth.reshape(-1), np.float32(background))
    first = img * (h * w)  # (m, 1) index of each pixel's image in the flattened stack

    def probe(dr: np.ndarray, dc: np.ndarray) -> np.ndarray:
        r = np.floor(row + dr / d + 0.5).astype(np.int64)
        c = np.floor(col + dc / d + 0.5).astype(np.int64)
        # Seen as unsigned, a negative coordinate is huge: one comparison tests both ends.
        inside = r.view(np.uint64) < h
        inside &= c.view(np.uint64) < w
        r *= w
        r += c
        r += first
        return np.take(flat_depth, np.where(inside, r, len(flat_depth) - 1))

    return (probe(offsets[..., 0], offsets[..., 1]) - probe(offsets[..., 2], offsets[..., 3])).astype(np.float32)


def sample_offsets(rng: np.random.Generator, shape: tuple[int, ...], max_offset: float, unary: float) -> np.ndarray:
    """Random (dp, dn) pairs (*shape, 4), uniform in a square of half-side ``max_offset`` pixel-metres.

    With probability ``unary`` a feature's dn is zero, so that it compares a probe with p itself.
    """
    off = rng.uniform(-max_offset, max_offset, (*shape, 4)).astype(np.float32)
    off[..., 2:] *= (rng.random(shape) >= unary)[..., None]
    return off


def sample_pixels(labels: np.ndarray, per_image: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``per_image`` body pixels (label > 0) of each image, uniformly without replacement: (m, 3)."""
    img, row, col = np.nonzero(labels > 0)
    key = rng.random(len(img))
    order = np.lexsort((key, img))
    img, row, col = img[order], row[order], col[order]
    first = np.searchsorted(img, img)  # index of the image's first pixel in the sorted list
    keep = np.arange(len(img)) - first < per_image
    return np.stack([img[keep], row[keep], col[keep]], 1)


class DepthFeatures:
    """Depth-comparison features at a set of pixels, as a :class:`~mlcv.classic.algorithms.forest.FeatureSource`.

    A feature is its four offsets (dp row, dp column, dn row, dn column), drawn by :func:`sample_offsets`.
    """

    def __init__(
        self,
        depth: np.ndarray,
        pixels: np.ndarray,
        max_offset: float,
        unary: float = 0.0,
        background: float = 10.0,
    ):
        self.depth = np.asarray(depth, np.float32)
        self.pixels = np.asarray(pixels, np.int64)
        self.max_offset = float(max_offset)
        self.unary = float(unary)
        self.background = float(background)
        self.num_samples = len(self.pixels)

    def sample(self, rng: np.random.Generator, num_nodes: int, k: int) -> np.ndarray:
        """``k`` random offset pairs per node: (num_nodes, k, 4)."""
        return sample_offsets(rng, (num_nodes, k), self.max_offset, self.unary)

    def evaluate(self, ids: np.ndarray, params: np.ndarray) -> np.ndarray:
        """f at the pixels ``ids`` for the offsets ``params`` (m, k, 4)."""
        return depth_feature(self.depth, self.pixels[ids], params, self.background)

"""Region-of-interest pooling (Fast R-CNN's RoIPool, Mask R-CNN's RoIAlign) and FPN level assignment (§10.2).

Conventions. ``features`` is one image's ``[H, W, C]`` map; ``rois [R, 4]`` are ``(ymin, xmin, ymax, xmax)``
boxes in continuous image pixel coordinates (pixel row ``i`` spans ``[i, i + 1)``), mapped to the feature map by
``spatial_scale`` (``1 / stride``, e.g. 1/16 for VGG16's conv5). Feature cell ``(i, j)`` then spans
``[i, i + 1) x [j, j + 1)`` in scaled coordinates, centre ``(i + 0.5, j + 0.5)``. The output is
``[R, ph, pw, C]``. Batches: ``jax.vmap`` over ``features [B, H, W, C]`` and ``rois [B, R, 4]`` (a fixed number
of rois per image, padding rois included, as the rest of the detection code), rather than the batch-index
column of the Caffe and torchvision ops, whose rois-per-image count is dynamic.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp


def _round_half_away(x: jax.Array) -> jax.Array:
    # C's round(), which the Caffe RoIPool uses; jnp.round rounds halves to even (2.5 -> 2, not 3).
    return jnp.sign(x) * jnp.floor(jnp.abs(x) + 0.5)


def _pool_bins(start: jax.Array, end: jax.Array, bins: int, limit: int) -> tuple[jax.Array, jax.Array]:
    """Caffe's bin edges ``[R, bins]``: ``floor(i * size / bins)`` to ``ceil((i + 1) * size / bins)``, clipped.

    In integer arithmetic, the exact values of Caffe's float32 formula: under jit XLA turns a division by the
    constant ``bins`` into a product with its rounded reciprocal, and ``ceil(3 * (7 * (1/3)))`` is then 8.
    """
    size = jnp.maximum(end - start, 1)
    i = jnp.arange(bins, dtype=jnp.int32)
    lo = (i * size[:, None]) // bins + start[:, None]
    hi = -((-(i + 1) * size[:, None]) // bins) + start[:, None]
    return jnp.clip(lo, 0, limit), jnp.clip(hi, 0, limit)


def roi_pool(features: jax.Array, rois: jax.Array, output_size: Sequence[int], spatial_scale: float = 1.0) -> jax.Array:
    """Fast R-CNN's RoIPool: the max of ``features [H, W, C]`` over each of ``ph x pw`` bins of each roi.

    As the original Caffe layer: the scaled roi corners are rounded to the grid (halves away from 0), the roi
    spans ``max(end - start, 1)`` cells, bin ``i`` covers cells ``start + floor(i * size / ph)`` to
    ``start + ceil((i + 1) * size / ph)`` (exclusive), clipped to the map, so neighbouring bins may share a
    row; an empty bin (roi outside the map) gives 0. Departure, from the coordinate convention: Caffe's rois
    name their last pixel (inclusive ``x2``, size ``x2 - x1 + 1``), here ``ymax`` is exclusive, so the end cell
    is ``round(ymax * spatial_scale)``; for integer boxes at ``spatial_scale = 1`` the two agree.

    Cost: masked maxima, first over rows then over columns, ``O(R ph H W C)``; fine for the small maps of the
    course, while the CUDA kernel visits only each bin's cells.
    """
    features = jnp.asarray(features)
    rois = jnp.asarray(rois, jnp.float32)
    h, w, _ = features.shape
    ph, pw = (int(v) for v in output_size)
    r = _round_half_away(rois * spatial_scale).astype(jnp.int32)
    y0, y1 = _pool_bins(r[:, 0], r[:, 2], ph, h)
    x0, x1 = _pool_bins(r[:, 1], r[:, 3], pw, w)
    rows = jnp.arange(h)
    cols = jnp.arange(w)
    in_row = (rows >= y0[..., None]) & (rows < y1[..., None])  # [R, ph, H]
    in_col = (cols >= x0[..., None]) & (cols < x1[..., None])  # [R, pw, W]
    # A bin is a rectangle, so its max is the max over its columns of the max over its rows.
    neg = jnp.array(-jnp.inf, features.dtype)
    by_row = jnp.max(jnp.where(in_row[..., None, None], features[None, None], neg), axis=2)  # [R, ph, W, C]
    out = jnp.max(jnp.where(in_col[:, None, :, :, None], by_row[:, :, None], neg), axis=3)  # [R, ph, pw, C]
    empty = (y1 <= y0)[:, :, None] | (x1 <= x0)[:, None, :]
    return jnp.where(empty[..., None], jnp.zeros((), features.dtype), out)


def _interpolation_matrix(coords: jax.Array, size: int) -> jax.Array:
    """Bilinear weights ``[..., size]`` of cells at sample coordinates ``[...]`` (cell ``k`` at coordinate ``k``).

    The reference kernel's rules: a sample beyond ``[-1, size]`` is 0; within it the coordinate is clamped to
    ``[0, size - 1]`` (the border cell's value extends half a cell outwards).
    """
    inside = (coords >= -1.0) & (coords <= size)
    c = jnp.maximum(coords, 0.0)
    low = jnp.floor(c)
    at_end = low >= size - 1
    low = jnp.where(at_end, size - 1, low).astype(jnp.int32)
    high = jnp.where(at_end, size - 1, low + 1)
    frac = jnp.where(at_end, 0.0, c - low)
    weights = jax.nn.one_hot(low, size) * (1.0 - frac)[..., None] + jax.nn.one_hot(high, size) * frac[..., None]
    return weights * inside[..., None]


def _bin_weights(start: jax.Array, end: jax.Array, bins: int, sampling_ratio: int, size: int) -> jax.Array:
    """Average interpolation weights ``[R, bins, size]`` of the ``sampling_ratio`` regular samples of each bin."""
    bin_size = (end - start) / bins
    step = jnp.arange(bins, dtype=jnp.float32)[:, None] + (jnp.arange(sampling_ratio) + 0.5) / sampling_ratio
    coords = start[:, None, None] + step * bin_size[:, None, None]  # [R, bins, sampling_ratio]
    return _interpolation_matrix(coords, size).mean(axis=2)


def roi_align(
    features: jax.Array,
    rois: jax.Array,
    output_size: Sequence[int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = 2,
    aligned: bool = True,
) -> jax.Array:
    """Mask R-CNN's RoIAlign: each of ``ph x pw`` bins of each roi is the mean of bilinear samples of the map.

    No rounding: the roi in scaled coordinates is cut into equal bins, each sampled at
    ``sampling_ratio x sampling_ratio`` regular points (bin fractions ``(k + 0.5) / sampling_ratio``), each
    point interpolated bilinearly from its 4 nearest cells; samples beyond ``[-1, H] x [-1, W]`` count as 0,
    and ones within it are clamped into the map, as the reference kernels (Detectron, torchvision).

    ``aligned=True`` (detectron2's ROIAlignV2, torchvision's ``aligned=True``) subtracts half a cell from the
    scaled roi, because cell ``k``'s value sits at its centre ``k + 0.5``: this is the correct mapping under the
    continuous pixel convention here, and a ramp ``f(y, x) = a y + b x`` then gives exactly the ramp at each bin
    centre. ``aligned=False`` is the original Mask R-CNN op: no shift, and rois smaller than 1 cell grown to 1.

    ``sampling_ratio`` must be a static positive int: the reference's adaptive ``ceil(roi_size / bins)`` points
    per bin depends on the roi and has no static shape. Bilinear interpolation is separable, so the samples are
    two weight matrices per roi, ``[ph, H]`` and ``[pw, W]``, already averaged over a bin's samples, applied by
    matrix products (the same sums as the reference, in another order).
    """
    if int(sampling_ratio) <= 0:
        raise ValueError(
            f"sampling_ratio must be a positive int (adaptive sampling has no static shape), got {sampling_ratio}"
        )
    features = jnp.asarray(features)
    rois = jnp.asarray(rois, jnp.float32)
    h, w, _ = features.shape
    ph, pw = (int(v) for v in output_size)
    r = rois * spatial_scale - (0.5 if aligned else 0.0)
    y0, x0, y1, x1 = r[:, 0], r[:, 1], r[:, 2], r[:, 3]
    if not aligned:
        y1 = y0 + jnp.maximum(y1 - y0, 1.0)
        x1 = x0 + jnp.maximum(x1 - x0, 1.0)
    wy = _bin_weights(y0, y1, ph, int(sampling_ratio), h).astype(features.dtype)  # [R, ph, H]
    wx = _bin_weights(x0, x1, pw, int(sampling_ratio), w).astype(features.dtype)  # [R, pw, W]
    # HIGHEST: the default float32 matmul of GPUs (TF32) and TPUs (bfloat16) would round the weights to 3 digits.
    hi = jax.lax.Precision.HIGHEST
    by_row = jnp.einsum("rih,hwc->riwc", wy, features, precision=hi)
    return jnp.einsum("riwc,rjw->rijc", by_row, wx, precision=hi)


def fpn_level(
    boxes: jax.Array,
    k0: int = 4,
    canonical_size: float = 224.0,
    min_level: int = 2,
    max_level: int = 5,
) -> jax.Array:
    """FPN level ``[...]`` int32 whose features pool each box ``[..., 4]`` (Lin et al. 2017, eq. 1).

    ``k = floor(k0 + log2(sqrt(h w) / canonical_size))`` clipped to ``[min_level, max_level]``: a 224 x 224 box
    (ImageNet's crop size) goes to ``P4``, one half as wide to ``P3``; an empty box to ``min_level``. Computed as
    ``min_level`` plus the count of levels whose lower area bound ``(canonical_size 2^(l - k0))^2`` the box
    reaches: the same integer, but a box exactly on a bound (112, 224, 448, ...) is compared exactly rather than
    through a float32 ``log2`` that may round either way (detectron2 adds ``1e-8`` inside its log for this).
    """
    boxes = jnp.asarray(boxes, jnp.float32)
    h = jnp.maximum(boxes[..., 2] - boxes[..., 0], 0.0)
    w = jnp.maximum(boxes[..., 3] - boxes[..., 1], 0.0)
    area = h * w
    level = jnp.full(area.shape, min_level, jnp.int32)
    for lvl in range(min_level + 1, max_level + 1):
        level += (area >= (canonical_size * 2.0 ** (lvl - k0)) ** 2).astype(jnp.int32)
    return level

"""Instance masks and boxes: a box's mask cut to a fixed grid (Mask R-CNN's targets) and pasted back (§11.4).

Conventions as :mod:`mlcv.ops.roi`: boxes ``(ymin, xmin, ymax, xmax)`` in continuous pixel coordinates (pixel row
``i`` spans ``[i, i + 1)``, its centre at ``i + 0.5``); a box's ``M x M`` grid cuts the box into equal cells,
cell ``k`` centred at ``ymin + (k + 0.5) (ymax - ymin) / M``. Static shapes throughout: a fixed number of boxes
an image, padding boxes included.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from mlcv.ops.roi import roi_align


def crop_masks(
    masks: jax.Array, boxes: jax.Array, index: jax.Array, size: int = 28, sampling_ratio: int = 2
) -> jax.Array:
    """Binary targets ``[B, R, size, size]`` float32: mask ``index [B, R]`` of ``masks [B, N, H, W]`` in ``boxes``.

    Each box's mask is cut by RoIAlign (:func:`mlcv.ops.roi.roi_align`, ``aligned=True``, ``sampling_ratio``
    samples a cell and axis) to ``size x size`` and thresholded at ``>= 0.5``, as detectron2's Mask R-CNN
    targets; ``boxes`` are ``[B, R, 4]`` in the masks' pixels. Sampling convention: a cell's value is the mean of
    bilinear samples of the mask, pixel ``(i, j)`` at its centre; so a box of exactly ``size`` pixels (on whole
    pixels) gives back its pixels (the 0.5 threshold undoes the samples' quarter-pixel blur), one of
    ``2 size`` pixels the ``2 x 2`` block means, and one of ``size / 2`` pixels the bilinear doubling of its
    pixels (half-pixel centres, OpenCV's ``INTER_LINEAR``) with the mask's neighbouring pixels at its border.
    """
    size = int(size)

    def one(m: jax.Array, b: jax.Array, i: jax.Array) -> jax.Array:
        channels = jnp.moveaxis(m.astype(jnp.float32), 0, -1)  # the N masks as channels: one RoIAlign for all
        cut = roi_align(channels, b, (size, size), 1.0, sampling_ratio, aligned=True)  # [R, size, size, N]
        own = jnp.take_along_axis(cut, i[:, None, None, None], axis=3)[..., 0]
        return (own >= 0.5).astype(jnp.float32)

    return jax.vmap(one)(masks, jnp.asarray(boxes, jnp.float32), jnp.asarray(index, jnp.int32))


def _paste_weights(lo: jax.Array, hi: jax.Array, grid: int, pixels: int) -> jax.Array:
    """Bilinear weights ``[..., pixels, grid]`` of a grid spread over ``[lo, hi)``, 0 for pixels outside it.

    Pixel centre ``p + 0.5`` sits at grid coordinate ``(p + 0.5 - lo) / (hi - lo) * grid - 0.5`` (cell ``k`` at
    ``k``), clamped to ``[0, grid - 1]``: the edge cells extend half a cell outwards, as OpenCV's ``INTER_LINEAR``.
    """
    centres = jnp.arange(pixels, dtype=jnp.float32) + 0.5
    lo, hi = lo[..., None], hi[..., None]
    u = (centres - lo) / jnp.maximum(hi - lo, 1e-6) * grid - 0.5
    u = jnp.clip(u, 0.0, grid - 1.0)
    low = jnp.minimum(jnp.floor(u), grid - 2.0)  # [grid - 2, grid - 1] holds the last cell at weight 1
    frac = u - low
    low = low.astype(jnp.int32)
    weights = jax.nn.one_hot(low, grid) * (1.0 - frac)[..., None] + jax.nn.one_hot(low + 1, grid) * frac[..., None]
    inside = (centres >= lo) & (centres < hi)
    return weights * inside[..., None]


def paste_masks(probs: jax.Array, boxes: jax.Array, image_shape: Sequence[int]) -> jax.Array:
    """``probs [B, K, M, M]`` resized bilinearly into boxes ``[B, K, 4]`` of an ``(H, W)`` image: ``[B, K, H, W]``.

    Each image pixel whose centre lies in the box samples the grid at its position in the box (bilinear, half-pixel
    centres, the border cells clamped: OpenCV's ``cv2.resize(..., INTER_LINEAR)`` of the grid to the box's size,
    for a box on whole pixels); pixels outside the box are 0. Separable: two interpolation matrices a box, applied
    by matrix products (exact float32 products, not the accelerators' reduced-precision default).
    """
    m = probs.shape[-1]
    h, w = (int(s) for s in image_shape)
    boxes = jnp.asarray(boxes, jnp.float32)
    wy = _paste_weights(boxes[..., 0], boxes[..., 2], m, h)  # [B, K, H, M]
    wx = _paste_weights(boxes[..., 1], boxes[..., 3], m, w)  # [B, K, W, M]
    hi = jax.lax.Precision.HIGHEST
    rows = jnp.einsum("bkhm,bkmn->bkhn", wy, probs.astype(jnp.float32), precision=hi)
    return jnp.einsum("bkhn,bkwn->bkhw", rows, wx, precision=hi)

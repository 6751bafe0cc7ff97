"""Backward warping of images by a disparity map or an optical-flow field, with bilinear interpolation.

Conventions. Images are batched ``[B, H, W, C]``; a disparity map is ``[B, H, W]`` (a trailing
channel of size 1, ``[B, H, W, 1]``, is accepted too) in pixels; a flow field is ``[B, H, W, 2]``
holding ``(u, v)``, the horizontal then the vertical displacement in pixels. As in
:mod:`mlcv.ops.stereo`, a left pixel ``(y, x)`` with disparity ``d`` matches the right pixel
``(y, x - d)``.

Backward warping: every output pixel samples the source image at a computed position, so the
output has no holes and is differentiable with respect to both the image and the displacement
(the spatial-transformer sampler Monodepth and the flow networks train through).

Borders: sampling positions are clamped to the image, so a position outside reads the nearest
border pixel (OpenCV's ``BORDER_REPLICATE``); each function also returns a ``[B, H, W]`` boolean
mask that is True where the unclamped position lay inside ``[0, W - 1] x [0, H - 1]``, for callers
that want to leave the invented border samples out of a loss. The gradient with respect to a
clamped coordinate is 0.

All functions are pure ``jnp`` with static shapes and can be jitted.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp


def _as_map(disparity: jax.Array) -> jax.Array:
    """``[B, H, W]`` from ``[B, H, W]`` or ``[B, H, W, 1]``."""
    if disparity.ndim == 4 and disparity.shape[-1] == 1:
        return disparity[..., 0]
    if disparity.ndim != 3:
        raise ValueError(f"disparity must be [B, H, W] or [B, H, W, 1], got shape {disparity.shape}")
    return disparity


def _check_image(image: jax.Array, field: jax.Array) -> None:
    if image.ndim != 4:
        raise ValueError(f"image must be [B, H, W, C], got shape {image.shape}")
    if field.shape[:3] != image.shape[:3]:
        raise ValueError(f"field {field.shape} and image {image.shape} differ in [B, H, W]")


def _corners(coord: jax.Array, size: int) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Clamped ``coord``: the lower and upper integer neighbours, the weight of the upper one, inside-mask.

    The lower neighbour is capped at ``size - 2`` so that a coordinate exactly on the last pixel
    interpolates with weight 1 on it instead of reading past the end.
    """
    inside = (coord >= 0) & (coord <= size - 1)
    coord = jnp.clip(coord, 0.0, size - 1.0)
    lower = jnp.clip(jnp.floor(coord), 0.0, max(size - 2, 0))
    frac = coord - lower
    lo = lower.astype(jnp.int32)
    return lo, jnp.minimum(lo + 1, size - 1), frac, inside


def _sample_rows(image: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``image[b, y, x[b, y, i]]`` interpolated linearly along the row; the inside-mask."""
    x0, x1, fx, inside = _corners(x, image.shape[2])
    left = jnp.take_along_axis(image, x0[..., None], axis=2)
    right = jnp.take_along_axis(image, x1[..., None], axis=2)
    fx = fx[..., None].astype(image.dtype)
    return (1.0 - fx) * left + fx * right, inside


def _sample_2d(image: jax.Array, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``image[b, y, x]`` interpolated bilinearly at per-pixel float ``(x, y)``; the inside-mask."""
    b, h, w, c = image.shape
    x0, x1, fx, in_x = _corners(x, w)
    y0, y1, fy, in_y = _corners(y, h)
    flat = image.reshape(b, h * w, c)

    def at(yi: jax.Array, xi: jax.Array) -> jax.Array:
        idx = (yi * w + xi).reshape(b, -1, 1)
        return jnp.take_along_axis(flat, idx, axis=1).reshape(*yi.shape, c)

    fx = fx[..., None].astype(image.dtype)
    fy = fy[..., None].astype(image.dtype)
    top = (1.0 - fx) * at(y0, x0) + fx * at(y0, x1)
    bottom = (1.0 - fx) * at(y1, x0) + fx * at(y1, x1)
    return (1.0 - fy) * top + fy * bottom, in_x & in_y


def warp_by_disparity(
    image: jax.Array, disparity: jax.Array, *, target: Literal["left", "right"] = "left"
) -> tuple[jax.Array, jax.Array]:
    """Reconstructs one view of a rectified pair from the other view and the target view's disparity.

    ``target="left"``: ``image`` is the right image, ``disparity`` the left view's, and
    ``out[b, y, x] = right[b, y, x - d_left(b, y, x)]`` (a left pixel's match lies ``d`` pixels to
    its left in the right image). ``target="right"``: the symmetric direction Monodepth also
    trains on: ``image`` is the left image, ``disparity`` the right view's, and
    ``out[b, y, x] = left[b, y, x + d_right(b, y, x)]``. Sampling is linear along the row (the
    row is exact, so no vertical blur).

    Args:
      image: ``[B, H, W, C]`` source view.
      disparity: ``[B, H, W]`` (or ``[B, H, W, 1]``) disparity of the target view, in pixels.
      target: the view being reconstructed.

    Returns:
      ``(reconstruction [B, H, W, C], valid [B, H, W] bool)``; ``valid`` is False where the sampled
      position fell outside the source image (its value is the clamped border sample).
    """
    disparity = _as_map(disparity)
    _check_image(image, disparity)
    if target not in ("left", "right"):
        raise ValueError(f"target must be 'left' or 'right', got {target!r}")
    sign = -1.0 if target == "left" else 1.0
    xs = jnp.arange(image.shape[2], dtype=disparity.dtype)
    return _sample_rows(image, xs + sign * disparity)


def warp_by_flow(image2: jax.Array, flow: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Backward-warps the second frame to the first: ``out[b, y, x] = image2[b, y + v, x + u]``.

    ``(u, v) = flow[b, y, x]`` is the displacement of the first frame's pixel ``(x, y)`` into the
    second frame, so a correct flow makes the output equal the first frame wherever the pixel
    stays visible. Bilinear interpolation in both axes.

    Args:
      image2: ``[B, H, W, C]`` second frame.
      flow: ``[B, H, W, 2]`` forward flow of the first frame, ``(u, v)`` in pixels.

    Returns:
      ``(warped [B, H, W, C], valid [B, H, W] bool)``, ``valid`` as in :func:`warp_by_disparity`.
    """
    if flow.ndim != 4 or flow.shape[-1] != 2:
        raise ValueError(f"flow must be [B, H, W, 2], got shape {flow.shape}")
    _check_image(image2, flow)
    h, w = image2.shape[1:3]
    xs = jnp.arange(w, dtype=flow.dtype)[None, None, :]
    ys = jnp.arange(h, dtype=flow.dtype)[None, :, None]
    return _sample_2d(image2, xs + flow[..., 0], ys + flow[..., 1])

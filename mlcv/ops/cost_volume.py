"""Learned-stereo and flow cost volumes: DispNet / FlowNet-C correlation, GC-Net concatenation, soft argmin.

Conventions. Feature maps are batched ``[B, H, W, C]``. Disparity follows :mod:`mlcv.ops.stereo`: a
left pixel ``(y, x)`` with disparity ``d`` matches the right pixel ``(y, x - d)``; the disparities
tried are ``0, 1, ..., max_disparity``, so ``D = max_disparity + 1``. Positions whose partner falls
outside the image get 0 (zero padding), as in the networks' implementations.

The volumes are built with a static Python loop over displacements (each a pad and a slice),
which XLA fuses; ``D`` and ``(2k + 1)^2`` are small in these networks (tens to a few hundred).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _check_pair(a: jax.Array, b: jax.Array) -> None:
    if a.ndim != 4 or a.shape != b.shape:
        raise ValueError(f"features must be two [B, H, W, C] arrays of one shape, got {a.shape} and {b.shape}")


def _shifted_right(right: jax.Array, max_disparity: int) -> list[jax.Array]:
    """For each ``d`` in ``0..max_disparity``: ``out[:, y, x] = right[:, y, x - d]``, 0 where ``x < d``."""
    w = right.shape[2]
    padded = jnp.pad(right, ((0, 0), (0, 0), (max_disparity, 0), (0, 0)))
    return [padded[:, :, max_disparity - d : max_disparity - d + w] for d in range(max_disparity + 1)]


def _disparity_valid(w: int, max_disparity: int, dtype) -> list[jax.Array]:
    """For each ``d``: ``[W]`` 1 where ``x - d >= 0``, else 0."""
    xs = jnp.arange(w)
    return [(xs >= d).astype(dtype) for d in range(max_disparity + 1)]


def correlation_1d(left_feat: jax.Array, right_feat: jax.Array, max_disparity: int) -> jax.Array:
    """DispNet-C's correlation layer: ``out[b, y, x, d] = mean_c left[b, y, x, c] * right[b, y, x - d, c]``.

    Args:
      left_feat, right_feat: ``[B, H, W, C]`` features of the left and right images.
      max_disparity: the largest disparity tried; ``D = max_disparity + 1``.

    Returns:
      ``[B, H, W, D]`` scores, 0 where ``x - d < 0``.
    """
    _check_pair(left_feat, right_feat)
    if max_disparity < 0:
        raise ValueError(f"max_disparity must be >= 0, got {max_disparity}")
    slices = [jnp.mean(left_feat * r, axis=-1) for r in _shifted_right(right_feat, max_disparity)]
    return jnp.stack(slices, axis=-1)


def correlation_2d(feat1: jax.Array, feat2: jax.Array, max_displacement: int, stride: int = 1) -> jax.Array:
    """FlowNet-C's correlation layer (patch size 1): ``mean_c f1[b, y, x, c] * f2[b, y + dy, x + dx, c]``.

    The displacements are ``dy, dx`` in ``stride * (-k, ..., k)`` with ``k = max_displacement // stride``,
    in raster order (``dy`` outer, ``dx`` inner): channel ``i * (2k + 1) + j`` holds
    ``dy = stride (i - k)``, ``dx = stride (j - k)``. ``stride`` is FlowNet's ``stride2`` (between
    displacements); every pixel of ``feat1`` is kept.

    Args:
      feat1, feat2: ``[B, H, W, C]`` features of the first and second frame.
      max_displacement: the largest ``|dx|`` or ``|dy|`` tried, in pixels.
      stride: spacing of the displacements.

    Returns:
      ``[B, H, W, (2k + 1)^2]`` scores, 0 where ``(y + dy, x + dx)`` falls outside ``feat2``.
    """
    _check_pair(feat1, feat2)
    if max_displacement < 0 or stride < 1:
        raise ValueError(f"need max_displacement >= 0 and stride >= 1, got {max_displacement}, {stride}")
    k = max_displacement // stride
    m = k * stride
    h, w = feat2.shape[1:3]
    padded = jnp.pad(feat2, ((0, 0), (m, m), (m, m), (0, 0)))
    slices = []
    for i in range(-k, k + 1):
        for j in range(-k, k + 1):
            dy, dx = i * stride, j * stride
            moved = padded[:, m + dy : m + dy + h, m + dx : m + dx + w]
            slices.append(jnp.mean(feat1 * moved, axis=-1))
    return jnp.stack(slices, axis=-1)


def concat_cost_volume(left_feat: jax.Array, right_feat: jax.Array, max_disparity: int) -> jax.Array:
    """GC-Net's cost volume: the left feature at ``(y, x)`` concatenated with the right one at ``(y, x - d)``.

    Where ``x - d < 0`` the whole ``2C`` vector is 0, left half included, as GC-Net's and PSMNet's
    implementations fill it (the 3-D convolutions then see "no match" rather than a half vector).

    Args:
      left_feat, right_feat: ``[B, H, W, C]`` features.
      max_disparity: the largest disparity; ``D = max_disparity + 1``.

    Returns:
      ``[B, D, H, W, 2C]``; ``out[:, d, :, :, :C]`` is the left features and ``out[:, d, :, :, C:]``
      the right ones shifted by ``d``.
    """
    _check_pair(left_feat, right_feat)
    if max_disparity < 0:
        raise ValueError(f"max_disparity must be >= 0, got {max_disparity}")
    valid = _disparity_valid(left_feat.shape[2], max_disparity, left_feat.dtype)
    slabs = [
        jnp.concatenate([left_feat * v[:, None], r], axis=-1)
        for v, r in zip(valid, _shifted_right(right_feat, max_disparity), strict=True)
    ]
    return jnp.stack(slabs, axis=1)


def soft_argmin(costs: jax.Array, axis: int = -1) -> jax.Array:
    """GC-Net's differentiable disparity: ``sum_d d * softmax(-c)_d`` over ``axis``.

    ``costs`` are costs (lower is better), with index ``d = 0, 1, ...`` along ``axis`` read as the
    disparity ``d``; for scores (higher is better, as correlation gives) pass ``-scores``. As the
    costs sharpen (are scaled up) the result tends to the argmin. The result has ``axis`` removed.
    """
    probs = jax.nn.softmax(-costs, axis=axis)
    d = jnp.arange(costs.shape[axis], dtype=probs.dtype)
    shape = [1] * costs.ndim
    shape[axis] = costs.shape[axis]
    return jnp.sum(probs * d.reshape(shape), axis=axis)

"""Dense stereo by block matching: NCC cost volume, winner-takes-all, left-right check, sub-pixel, depth.

Conventions. Images are rectified grey ``(H, W)`` arrays; a left pixel ``(y, x)``
with disparity ``d = x_L - x_R >= 0`` matches the right pixel ``(y, x - d)``. The
course's eqs. 73 (NCC) and 77 (left-right consistency) index the right view (its
image, its disparity map) at ``x + d`` instead, which with this ``d`` is the wrong
side: their ``d`` is minus ours. The cost volume (the disparity space image) is
stored disparity-major, ``(D, H, W)``, where slice ``i`` holds disparity
``min_disparity + i``; its entries are NCC scores in ``[-1, 1]`` (higher is better)
and ``-inf`` where the score is undefined. Disparity maps are float arrays with NaN
for "no estimate".

Everything here is pure JAX, vectorised over pixels; the cost volume is built one
disparity slice at a time (``lax.map``) and kept whole, ``D * H * W`` floats
(118 MB for the 500 x 741 Middlebury pair at 80 disparities).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

# ITU-R BT.601 luma weights, the same as OpenCV's COLOR_RGB2GRAY.
_LUMA = (0.299, 0.587, 0.114)


def rgb_to_grey(rgb: jax.Array) -> jax.Array:
    """Grey level ``0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601) of an ``(..., 3)`` image, as float32."""
    return jnp.asarray(rgb, jnp.float32) @ jnp.asarray(_LUMA, jnp.float32)


def _window_sum(x: jax.Array, radius: int, axis: int) -> jax.Array:
    """Sums of ``2 radius + 1`` consecutive entries along ``axis`` ('valid' windows)."""
    window = [1] * x.ndim
    window[axis] = 2 * radius + 1
    return jax.lax.reduce_window(x, 0.0, jax.lax.add, tuple(window), (1,) * x.ndim, "VALID")


def box_sum(x: jax.Array, radius: int) -> jax.Array:
    """Sum of ``x`` over the ``(2 radius + 1)^2`` window centred on each pixel of the last two axes.

    The result has the input's shape; entries whose window leaves the image are 0
    (callers mask them). The box filter is separable: a running-window sum along x,
    then along y. An integral image would give the same sums, but on XLA's CPU
    backend its cumulative sums measured 3x slower for a 5 x 5 window (cost
    volume of the 500 x 741 pair), and in float32 the integral of a whole image
    loses a window sum's low digits to cancellation.
    """
    h, w = x.shape[-2:]
    if 2 * radius + 1 > min(h, w):
        raise ValueError(f"window of radius {radius} does not fit a {h} x {w} image")
    s = _window_sum(_window_sum(x, radius, x.ndim - 1), radius, x.ndim - 2)
    pad = [(0, 0)] * (x.ndim - 2) + [(radius, radius), (radius, radius)]
    return jnp.pad(s, pad)


def box_mean(x: jax.Array, defined: jax.Array, radius: int) -> jax.Array:
    """Mean of ``x`` over the defined entries of the ``(2 radius + 1)^2`` window on each pixel of the last two axes.

    ``defined`` (broadcastable to ``x``) marks the entries that count; windows are cut at the image border
    rather than padded, so a border pixel averages what it has. Where a window holds no defined entry the
    result is ``x`` itself. Used to aggregate a learned matching cost before the winner-takes-all.
    """
    if radius <= 0:
        return x
    defined = jnp.broadcast_to(defined, x.shape).astype(x.dtype)
    window = (1,) * (x.ndim - 2) + (2 * radius + 1,) * 2
    pad = [(0, 0)] * (x.ndim - 2) + [(radius, radius)] * 2
    total = jax.lax.reduce_window(jnp.where(defined > 0, x, 0.0), 0.0, jax.lax.add, window, (1,) * x.ndim, pad)
    count = jax.lax.reduce_window(defined, 0.0, jax.lax.add, window, (1,) * x.ndim, pad)
    return jnp.where(count > 0, total / jnp.maximum(count, 1.0), x)


def _normalise(img: jax.Array) -> jax.Array:
    # Zero-mean NCC is invariant to a gain and offset per window, so a global standardisation changes no score;
    # it only keeps the float32 sums of squares near 1 whatever the input range.
    img = jnp.asarray(img, jnp.float32)
    return (img - img.mean()) / jnp.maximum(img.std(), 1e-12)


def _scale(img: jax.Array) -> jax.Array:
    # Plain NCC is invariant to a gain only: an offset would change its scores, so the image is divided by its
    # root mean square (sums of squares near 1 again) and not centred.
    img = jnp.asarray(img, jnp.float32)
    return img / jnp.maximum(jnp.sqrt(jnp.mean(img * img)), 1e-12)


def _shift_right(img: jax.Array, d: jax.Array, max_shift: int) -> jax.Array:
    """``out[y, x] = img[y, x - d]`` (0 where ``x < d``) for a traced ``0 <= d <= max_shift``."""
    h, w = img.shape
    padded = jnp.pad(img, ((0, 0), (max_shift, 0)))
    return jax.lax.dynamic_slice(padded, (0, max_shift - d), (h, w))


@functools.partial(jax.jit, static_argnames=("radius", "num_disparities", "min_disparity", "min_var", "zero_mean"))
def ncc_cost_volume(
    left: jax.Array,
    right: jax.Array,
    *,
    radius: int,
    num_disparities: int,
    min_disparity: int = 0,
    min_var: float = 1e-4,
    zero_mean: bool = True,
) -> jax.Array:
    """NCC of each left window with the right window ``d`` pixels to its left, for every disparity.

    ``zero_mean=True`` (the default): ``sum((L - mean L)(R - mean R)) / sqrt(sum (L - mean L)^2 sum (R - mean
    R)^2)``, which ignores a gain and an offset between the windows (OpenCV's ``TM_CCOEFF_NORMED``).
    ``zero_mean=False``: the course's plain NCC of eq. 73, ``sum L R / sqrt(sum L^2 sum R^2)``, the cosine of
    the two windows, which ignores a gain but not an offset (OpenCV's ``TM_CCORR_NORMED``). Sums run over a
    ``(2 radius + 1)^2`` window, from box sums of the images, their squares and ``L R``.

    Sign: eq. 73 writes ``R(u + d)``; here ``d = u_L - u_R >= 0``, so the left pixel ``u`` is scored against
    the right window centred at ``u - d`` (a right image ``R(u) = L(u + 3)`` peaks at ``d = +3``).

    Args:
      left, right: ``(H, W)`` grey images.
      radius: ``W`` of the ``(2W+1)^2`` window.
      num_disparities: ``D``, the number of disparities tried.
      min_disparity: the first disparity (``>= 0``).
      min_var: a window whose variance (in units of the image's global variance) is below this is
        textureless: its score is undefined. The same test for both scores, so that they differ in the
        score alone (plain NCC is defined on a flat window, but scores 1 against any flat partner).
      zero_mean: subtract each window's mean (the default) or not (plain NCC).

    Returns:
      ``(D, H, W)`` scores; ``-inf`` where the left window or the right window leaves its image
      (``x - d - radius < 0``) or either window is textureless.
    """
    if min_disparity < 0:
        raise ValueError(f"min_disparity must be >= 0, got {min_disparity}")
    left_c, right_c = _normalise(left), _normalise(right)
    h, w = left_c.shape
    n = float((2 * radius + 1) ** 2)
    max_shift = min_disparity + num_disparities - 1
    sum_l, sum_r = box_sum(left_c, radius), box_sum(right_c, radius)
    var_l = box_sum(left_c * left_c, radius) - sum_l * sum_l / n
    var_r = box_sum(right_c * right_c, radius) - sum_r * sum_r / n
    ys, xs = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
    inside = (ys >= radius) & (ys < h - radius) & (xs >= radius) & (xs < w - radius)
    textured_l = var_l > min_var * n
    if zero_mean:
        left_s, right_s, energy_l, energy_r = left_c, right_c, var_l, var_r
    else:
        left_s, right_s = _scale(left), _scale(right)
        energy_l, energy_r = box_sum(left_s * left_s, radius), box_sum(right_s * right_s, radius)

    def one(d):
        cross = box_sum(left_s * _shift_right(right_s, d, max_shift), radius)
        if zero_mean:
            cross = cross - sum_l * _shift_right(sum_r, d, max_shift) / n
        ok = inside & textured_l & (_shift_right(var_r, d, max_shift) > min_var * n) & (xs - d - radius >= 0)
        score = cross / jnp.sqrt(jnp.maximum(energy_l * _shift_right(energy_r, d, max_shift), 1e-30))
        return jnp.where(ok, jnp.clip(score, -1.0, 1.0), -jnp.inf)

    # A sequential map, not vmap: vmap turns the per-disparity shift into a gather that XLA re-evaluates inside
    # the fused window sums, which measured 10x slower for a 15 x 15 window.
    return jax.lax.map(one, jnp.arange(min_disparity, max_shift + 1))


def _running_argmax(volume: jax.Array, slice_at) -> jax.Array:
    """Index of the best of ``slice_at(volume, i)`` over ``i``, first on ties; -1 where every score is ``-inf``.

    A loop over disparities keeping the best score so far: on XLA's CPU backend a
    ``jnp.argmax`` over the disparity axis of the Motorcycle volume measured ~20x slower.
    """
    num, h, w = volume.shape

    def body(i, carry):
        best, arg = carry
        score = slice_at(volume, i)
        better = score > best
        return jnp.where(better, score, best), jnp.where(better, i, arg)

    init = (jnp.full((h, w), -jnp.inf, volume.dtype), jnp.full((h, w), -1, jnp.int32))
    return jax.lax.fori_loop(0, num, body, init)[1]


def _to_disparity(index: jax.Array, min_disparity: int) -> jax.Array:
    return jnp.where(index >= 0, (index + min_disparity).astype(jnp.float32), jnp.nan)


def winner_takes_all(volume: jax.Array, min_disparity: int = 0) -> jax.Array:
    """The disparity of the best score at each pixel, as float; NaN where no disparity has a score."""
    index = _running_argmax(volume, lambda v, i: jax.lax.dynamic_index_in_dim(v, i, 0, keepdims=False))
    return _to_disparity(index, min_disparity)


def right_volume(volume: jax.Array, min_disparity: int = 0) -> jax.Array:
    """The right-referenced volume from the left one: ``C_R[d, y, x] = C_L[d, y, x + d]``.

    Both score the same pair of windows (right at ``x``, left at ``x + d``), so the
    right image's disparity map needs no second pass of NCC.
    """
    num, h, w = volume.shape
    max_shift = min_disparity + num - 1
    padded = jnp.pad(volume, ((0, 0), (0, 0), (0, max_shift)), constant_values=-jnp.inf)
    return jax.vmap(lambda slab, d: jax.lax.dynamic_slice(slab, (0, d), (h, w)))(
        padded, jnp.arange(num) + min_disparity
    )


def right_winner_takes_all(volume: jax.Array, min_disparity: int = 0) -> jax.Array:
    """``winner_takes_all(right_volume(volume))`` without building the right volume."""
    num, h, w = volume.shape
    max_shift = min_disparity + num - 1

    def slice_at(v, i):
        score = jnp.pad(
            jax.lax.dynamic_index_in_dim(v, i, 0, keepdims=False), ((0, 0), (0, max_shift)), constant_values=-jnp.inf
        )
        return jax.lax.dynamic_slice(score, (0, min_disparity + i), (h, w))

    return _to_disparity(_running_argmax(volume, slice_at), min_disparity)


def left_right_check(disp_left: jax.Array, disp_right: jax.Array, threshold: float) -> jax.Array:
    """Keeps ``d_L(x)`` where ``|d_L(x) - d_R(x - d_L(x))| <= threshold``; NaN elsewhere.

    A pixel seen only by the left camera (occluded in the right image, or matched
    outside it) has no consistent partner, so its estimate is dropped.
    """
    h, w = disp_left.shape
    xs = jnp.arange(w)[None, :]
    target = xs - jnp.round(jnp.nan_to_num(disp_left, nan=0.0)).astype(jnp.int32)
    inside = (target >= 0) & (target < w)
    partner = jnp.take_along_axis(disp_right, jnp.clip(target, 0, w - 1), axis=1)
    keep = inside & jnp.isfinite(disp_left) & (jnp.abs(disp_left - partner) <= threshold)
    return jnp.where(keep, disp_left, jnp.nan)


def parabola_offset(c_minus: jax.Array, c_0: jax.Array, c_plus: jax.Array) -> jax.Array:
    """Offset of the vertex of the parabola through ``(-1, c_minus), (0, c_0), (1, c_plus)``, in ``[-0.5, 0.5]``.

    ``delta = (c_minus - c_plus) / (2 (c_minus - 2 c_0 + c_plus))``; 0 where the
    three points do not bend down (no maximum; a tolerance keeps float32 round-off on
    a straight line from reading as a vertex far away) or a neighbour is missing.
    """
    curvature = c_minus - 2.0 * c_0 + c_plus
    ok = jnp.isfinite(c_minus) & jnp.isfinite(c_plus) & (curvature < -1e-6)
    safe = jnp.where(ok, curvature, 1.0)
    delta = jnp.where(ok, (jnp.where(ok, c_minus - c_plus, 0.0)) / (2.0 * safe), 0.0)
    return jnp.clip(delta, -0.5, 0.5)


def subpixel_refine(volume: jax.Array, disparity: jax.Array, min_disparity: int = 0) -> jax.Array:
    """Adds the parabola-fit offset around each integer winner; pixels at the ends of the range stay integer."""
    num = volume.shape[0]
    idx = jnp.nan_to_num(disparity - min_disparity, nan=0.0).astype(jnp.int32)

    def at(i):
        inside = (i >= 0) & (i < num)
        v = jnp.take_along_axis(volume, jnp.clip(i, 0, num - 1)[None], axis=0)[0]
        return jnp.where(inside, v, -jnp.inf)

    return disparity + parabola_offset(at(idx - 1), at(idx), at(idx + 1))


@jax.jit
def fill_background(disparity: jax.Array) -> jax.Array:
    """Fills each missing pixel with the smaller of the nearest estimates left and right on its row.

    Missing pixels are mostly occlusions, which belong to the farther surface, hence
    the smaller disparity; a row end takes its one neighbour; an empty row stays NaN.
    """
    h, w = disparity.shape
    has = jnp.isfinite(disparity)
    xs = jnp.broadcast_to(jnp.arange(w), (h, w))
    left_idx = jax.lax.cummax(jnp.where(has, xs, -1), axis=1)
    right_idx = jax.lax.cummin(jnp.where(has, xs, w), axis=1, reverse=True)
    from_left = jnp.where(left_idx >= 0, jnp.take_along_axis(disparity, jnp.clip(left_idx, 0, w - 1), 1), jnp.inf)
    from_right = jnp.where(right_idx < w, jnp.take_along_axis(disparity, jnp.clip(right_idx, 0, w - 1), 1), jnp.inf)
    filled = jnp.minimum(from_left, from_right)
    return jnp.where(has, disparity, jnp.where(jnp.isfinite(filled), filled, jnp.nan))


@functools.partial(jax.jit, static_argnames=("min_disparity", "lr_threshold", "subpixel", "fill"))
def disparity_from_volume(
    volume: jax.Array,
    *,
    min_disparity: int = 0,
    lr_threshold: float | None = 1.0,
    subpixel: bool = True,
    fill: bool = False,
) -> jax.Array:
    """WTA on a cost volume, then the optional LR check (``lr_threshold=None`` skips it), parabola and fill."""
    disp = winner_takes_all(volume, min_disparity)
    if lr_threshold is not None:
        disp_r = right_winner_takes_all(volume, min_disparity)
        disp = left_right_check(disp, disp_r, lr_threshold)
    if subpixel:
        disp = subpixel_refine(volume, disp, min_disparity)
    if fill:
        disp = fill_background(disp)
    return disp


def block_match(
    left: jax.Array,
    right: jax.Array,
    *,
    radius: int,
    num_disparities: int,
    min_disparity: int = 0,
    lr_threshold: float | None = 1.0,
    subpixel: bool = True,
    fill: bool = False,
    zero_mean: bool = True,
) -> jax.Array:
    """The whole matcher: NCC volume, WTA, optional LR check, optional parabola refinement and background fill.

    ``lr_threshold=None`` skips the left-right check; ``zero_mean=False`` scores with plain NCC (see
    :func:`ncc_cost_volume`). Returns the left disparity map, NaN where no estimate. Two jitted stages rather
    than one, so that settings sharing a window (or a pair size) share compilations; the volume is
    materialised either way, for the sub-pixel fit.
    """
    vol = ncc_cost_volume(
        left, right, radius=radius, num_disparities=num_disparities, min_disparity=min_disparity, zero_mean=zero_mean
    )
    return disparity_from_volume(
        vol, min_disparity=min_disparity, lr_threshold=lr_threshold, subpixel=subpixel, fill=fill
    )


@jax.jit
def disparity_to_depth(disparity: jax.Array, focal_px: float, baseline: float, doffs_px: float = 0.0) -> jax.Array:
    """Depth ``z = b f / (d + doffs)`` in the units of ``baseline``; NaN where ``d + doffs <= 0`` or ``d`` is NaN.

    ``doffs = 0`` is the textbook ``z = b f / d``; Middlebury's ``doffs`` is the
    difference of the two cameras' principal points, ``cx_right - cx_left``.
    """
    d = jnp.asarray(disparity, jnp.float32) + doffs_px
    return jnp.where(d > 0, baseline * focal_px / jnp.where(d > 0, d, 1.0), jnp.nan)

"""Box overlap, the R-CNN box parametrisation and the box regression losses, as pure ``jnp`` functions.

Boxes follow the data contract of ``mlcv.data.ops.boxes``: ``(..., 4)`` float32 ``(ymin, xmin, ymax, xmax)`` in
continuous pixel coordinates (pixel row ``i`` spans ``[i, i + 1)``), area ``(ymax - ymin) * (xmax - xmin)`` with
no ``+ 1``. A box with ``ymax <= ymin`` or ``xmax <= xmin`` is empty (area 0); padding rows of zeros are empty
boxes. Every function works under ``jax.jit`` and ``jax.vmap`` and broadcasts over leading batch axes.

(The NumPy module ``mlcv.ops.boxes`` holds the ``(x0, y0, x1, y1)`` boxes of the classic Viola-Jones code; it is
a separate convention and is not used here.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

# Largest log-scale change decode applies: a box at most 1000/16 times its anchor, as torchvision and detectron2
# clamp it (exp of an untrained network's output would otherwise overflow float32 to inf, and inf - inf = NaN).
DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)

# Smallest side length encode divides by or takes the log of: a padding row (all zeros) then gives a large but
# finite delta, so a loss masked by multiplication (0 * delta) stays finite instead of 0 * inf = NaN.
_MIN_SIZE = 1e-6


def box_area(boxes: jax.Array) -> jax.Array:
    """Area ``[...]`` of boxes ``[..., 4]``; empty or inverted boxes have area 0."""
    boxes = jnp.asarray(boxes, jnp.float32)
    h = jnp.maximum(boxes[..., 2] - boxes[..., 0], 0.0)
    w = jnp.maximum(boxes[..., 3] - boxes[..., 1], 0.0)
    return h * w


def _pairs(a: jax.Array, b: jax.Array) -> tuple[tuple[jax.Array, ...], tuple[jax.Array, ...]]:
    """The 4 coordinates of ``a`` as ``[..., N, 1]`` and of ``b`` as ``[..., 1, M]``.

    Scalar planes rather than ``[..., N, M, 2]`` slices of the corners: XLA then fuses the pairwise formulas into
    one loop, twice as fast on CPU for 1000 x 1000 boxes.
    """
    a = jnp.asarray(a, jnp.float32)
    b = jnp.asarray(b, jnp.float32)
    return tuple(a[..., :, None, k] for k in range(4)), tuple(b[..., None, :, k] for k in range(4))


def _intersection_union(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    (ay0, ax0, ay1, ax1), (by0, bx0, by1, bx1) = _pairs(a, b)
    ih = jnp.maximum(jnp.minimum(ay1, by1) - jnp.maximum(ay0, by0), 0.0)
    iw = jnp.maximum(jnp.minimum(ax1, bx1) - jnp.maximum(ax0, bx0), 0.0)
    inter = ih * iw
    area_a = jnp.maximum(ay1 - ay0, 0.0) * jnp.maximum(ax1 - ax0, 0.0)
    area_b = jnp.maximum(by1 - by0, 0.0) * jnp.maximum(bx1 - bx0, 0.0)
    return inter, area_a + area_b - inter


def _safe_divide(num: jax.Array, den: jax.Array) -> jax.Array:
    # The inner where keeps the untaken branch finite too, so gradients through the outer where are not NaN.
    ok = den > 0
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def iou_matrix(a: jax.Array, b: jax.Array) -> jax.Array:
    """Intersection over union ``[..., N, M]`` of every box of ``a [..., N, 4]`` with every box of ``b [..., M, 4]``.

    Leading axes broadcast. A pair whose union is empty (two empty boxes) has IoU 0, never NaN, and an empty box
    has IoU 0 with everything: padding rows overlap nothing. (OpenCV's ``dnn.NMSBoxes`` instead gives two empty
    boxes overlap 1.)
    """
    inter, union = _intersection_union(a, b)
    return _safe_divide(inter, union)


def giou_matrix(a: jax.Array, b: jax.Array) -> jax.Array:
    """Generalised IoU ``[..., N, M]`` (Rezatofighi et al. 2019): ``IoU - (C - U) / C``, in ``[-1, 1]``.

    ``C`` is the area of the smallest box enclosing both and ``U`` their union. Unlike IoU it still ranks
    disjoint boxes by how far apart they are, which is why it serves as a loss (``1 - GIoU``). Where ``C`` is
    0 (both boxes empty and at the same point) it is 0 rather than NaN.
    """
    inter, union = _intersection_union(a, b)
    (ay0, ax0, ay1, ax1), (by0, bx0, by1, bx1) = _pairs(a, b)
    hull_h = jnp.maximum(jnp.maximum(ay1, by1) - jnp.minimum(ay0, by0), 0.0)
    hull_w = jnp.maximum(jnp.maximum(ax1, bx1) - jnp.minimum(ax0, bx0), 0.0)
    hull = hull_h * hull_w
    return _safe_divide(inter, union) - _safe_divide(hull - union, hull)


def _centre_size(boxes: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    boxes = jnp.asarray(boxes, jnp.float32)
    h = boxes[..., 2] - boxes[..., 0]
    w = boxes[..., 3] - boxes[..., 1]
    return boxes[..., 0] + 0.5 * h, boxes[..., 1] + 0.5 * w, h, w


def encode(boxes: jax.Array, anchors: jax.Array, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> jax.Array:
    """Regression targets ``[..., 4]`` of boxes ``[..., 4]`` relative to anchors (or proposals) ``[..., 4]``.

    R-CNN's parametrisation (course eqs. 49-53; Girshick et al. 2014, appendix C). With the anchor's centre
    ``(p_y, p_x)`` and size ``(p_h, p_w)`` and the box's ``(g_y, g_x, g_h, g_w)``, the delta vector is, in this
    order::

        t_y = w_y (g_y - p_y) / p_h      t_x = w_x (g_x - p_x) / p_w
        t_h = w_h log(g_h / p_h)         t_w = w_w log(g_w / p_w)

    i.e. ``(t_y, t_x, t_h, t_w)``, matching the ``(y, x)`` order of the boxes (torchvision and detectron2 store
    ``(dx, dy, dw, dh)``). ``weights = (w_y, w_x, w_h, w_w)`` are 1 in R-CNN; Faster R-CNN's second stage uses
    ``(10, 10, 5, 5)`` so that the targets have roughly unit variance. Arguments broadcast against each other.
    Sizes below 1e-6 are raised to 1e-6 (so an all-zero padding row gives finite deltas; mask its loss).
    """
    wy, wx, wh, ww = (float(v) for v in weights)
    py, px, ph, pw = _centre_size(anchors)
    gy, gx, gh, gw = _centre_size(boxes)
    ph, pw = jnp.maximum(ph, _MIN_SIZE), jnp.maximum(pw, _MIN_SIZE)
    gh, gw = jnp.maximum(gh, _MIN_SIZE), jnp.maximum(gw, _MIN_SIZE)
    return jnp.stack(
        [wy * (gy - py) / ph, wx * (gx - px) / pw, wh * jnp.log(gh / ph), ww * jnp.log(gw / pw)],
        axis=-1,
    )


def decode(
    deltas: jax.Array,
    anchors: jax.Array,
    weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
    scale_clamp: float = DEFAULT_SCALE_CLAMP,
) -> jax.Array:
    """Boxes ``[..., 4]`` from deltas ``(t_y, t_x, t_h, t_w) [..., 4]`` relative to anchors ``[..., 4]``.

    The inverse of ``encode``: ``g_y = p_y + p_h t_y / w_y``, ``g_h = p_h exp(t_h / w_h)`` and likewise for x.
    Before the exponential the log-scales are clamped to at most ``scale_clamp`` (default ``log(1000 / 16)``, as
    torchvision and detectron2), so a wild network output gives a large box rather than inf. Within the clamp
    ``decode(encode(b, a), a) == b`` up to rounding. The result is not clipped to the image.
    """
    wy, wx, wh, ww = (float(v) for v in weights)
    deltas = jnp.asarray(deltas, jnp.float32)
    py, px, ph, pw = _centre_size(anchors)
    cy = py + ph * deltas[..., 0] / wy
    cx = px + pw * deltas[..., 1] / wx
    h = ph * jnp.exp(jnp.minimum(deltas[..., 2] / wh, scale_clamp))
    w = pw * jnp.exp(jnp.minimum(deltas[..., 3] / ww, scale_clamp))
    return jnp.stack([cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h, cx + 0.5 * w], axis=-1)


def clip_boxes(boxes: jax.Array, height: float | jax.Array, width: float | jax.Array) -> jax.Array:
    """Boxes ``[..., 4]`` clipped to the ``[0, height] x [0, width]`` image (decoded boxes may leave it)."""
    boxes = jnp.asarray(boxes, jnp.float32)
    hi = jnp.stack(jnp.broadcast_arrays(jnp.float32(height), jnp.float32(width)) * 2, axis=-1)
    return jnp.clip(boxes, 0.0, hi)


def smooth_l1(x: jax.Array, beta: float = 1.0) -> jax.Array:
    """Elementwise smooth L1 (Huber divided by ``beta``) of residuals ``x``, Fast R-CNN's box loss (course eq. 54).

    ``0.5 x^2 / beta`` where ``|x| < beta``, else ``|x| - 0.5 beta``: quadratic near 0, linear for outliers, so a
    badly placed proposal does not dominate the gradient as with an L2 loss. Fast R-CNN uses ``beta = 1``;
    ``beta = 0`` is plain ``|x|`` (detectron2's default for the RPN). Sum or average over the 4 deltas and the
    positives yourself.
    """
    x = jnp.asarray(x, jnp.float32)
    ax = jnp.abs(x)
    if beta <= 0:
        return ax
    return jnp.where(ax < beta, 0.5 * x * x / beta, ax - 0.5 * beta)


def l2(x: jax.Array) -> jax.Array:
    """Elementwise ``0.5 x^2`` of residuals ``x``: the squared error of R-CNN's box regression (course eq. 54).

    R-CNN fits the deltas by ridge regression on pool5 features, ``sum_i (t_i - w^T phi_i)^2 + lambda |w|^2``:
    this L2 loss plus weight decay. The factor 0.5 (as ``optax.l2_loss``) does not move the minimiser and makes
    it agree with ``smooth_l1(x, beta=1)`` for ``|x| < 1``. Fast R-CNN replaced it by ``smooth_l1``.
    """
    x = jnp.asarray(x, jnp.float32)
    return 0.5 * x * x

"""Anchor boxes, anchor-to-ground-truth matching and balanced sampling of the detection heads (course §10.2).

Boxes are ``(ymin, xmin, ymax, xmax)`` float32 in continuous pixel coordinates (see ``mlcv.ops.box_coding``).
Shapes are static: padding ground-truth rows are marked by a ``gt_mask`` and never matched, and sampling returns
a mask over all anchors rather than a list of indices. Matching and sampling work on one image; batch them with
``jax.vmap``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mlcv.ops.box_coding import iou_matrix

# Codes of ``match`` for anchors that are not positives.
NEGATIVE = -1
IGNORED = -2


def _cell_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float]) -> np.ndarray:
    # Sizes outer, ratios inner, as detectron2 orders the anchors of a cell.
    out = []
    for size, ratio in itertools.product(sizes, aspect_ratios):
        h, w = size * np.sqrt(ratio), size / np.sqrt(ratio)
        out.append([-h / 2, -w / 2, h / 2, w / 2])
    return np.asarray(out, np.float64).reshape(-1, 4)


def _grid_anchors(feature_shape: Sequence[int], stride: float, cell: np.ndarray) -> jax.Array:
    h, w = (int(v) for v in feature_shape)
    cy = (np.arange(h) + 0.5) * stride
    cx = (np.arange(w) + 0.5) * stride
    centres = np.stack(np.meshgrid(cy, cx, indexing="ij"), axis=-1).reshape(-1, 1, 2)
    # Built in float64 NumPy: anchors are constants of the model, and the float32 rounding happens once.
    anchors = np.concatenate([centres, centres], axis=-1) + cell[None]
    return jnp.asarray(anchors.reshape(-1, 4), jnp.float32)


def generate_anchors(
    feature_shape: Sequence[int],
    stride: float,
    scales: Sequence[float] = (8.0, 16.0, 32.0),
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
) -> jax.Array:
    """The anchors ``[h * w * A, 4]`` of an ``h x w`` feature map with the given ``stride``, ``A = S * R``.

    Size convention: an anchor of scale ``s`` and aspect ratio ``r = height / width`` has side ``s * stride``
    for ``r = 1`` and keeps that area for other ratios: ``height = s * stride * sqrt(r)``,
    ``width = s * stride / sqrt(r)``. The defaults are Faster R-CNN's 9 anchors on its stride-16 map (sides
    128, 256, 512). For absolute sizes in pixels use ``multilevel_anchors``.

    Centre convention: feature cell ``(i, j)`` covers image pixels ``[i stride, (i + 1) stride)``, so its anchors
    are centred at ``((i + 0.5) stride, (j + 0.5) stride)``. This is the continuous-coordinate centre of the
    cell; torchvision and detectron2 put the centre at ``(i stride, j stride)`` (their offset 0), half a stride
    up and left, which only differs by where the regression targets start.

    Order: row-major over cells, then scales, then ratios: anchor ``((i w + j) S + k) R + l`` has scale ``k``
    and ratio ``l``, matching a head whose output ``[h, w, A * 4]`` is reshaped to ``[h * w * A, 4]``.
    """
    sizes = [float(s) * stride for s in scales]
    return _grid_anchors(feature_shape, stride, _cell_anchors(sizes, aspect_ratios))


def multilevel_anchors(
    feature_shapes: Sequence[Sequence[int]],
    strides: Sequence[float],
    sizes: Sequence[float | Sequence[float]],
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
) -> jax.Array:
    """Anchors of several feature levels (an FPN), concatenated level by level: ``[sum_l h_l w_l A_l, 4]``.

    ``sizes[l]`` is the anchor side in image pixels at level ``l`` (for ratio 1): one number, or a sequence for
    several anchors per cell and ratio. FPN uses one size per level, ``(32, 64, 128, 256, 512)`` on strides
    ``(4, 8, 16, 32, 64)``; RetinaNet three, ``32 * 2 ** (0, 1/3, 2/3)`` at stride 8 and so on. Each level is
    laid out as in ``generate_anchors``.
    """
    if not len(feature_shapes) == len(strides) == len(sizes):
        raise ValueError(f"{len(feature_shapes)} feature shapes, {len(strides)} strides, {len(sizes)} sizes")
    levels = []
    for shape, stride, size in zip(feature_shapes, strides, sizes, strict=True):
        level_sizes = [float(size)] if np.isscalar(size) else [float(s) for s in size]
        levels.append(_grid_anchors(shape, stride, _cell_anchors(level_sizes, aspect_ratios)))
    return jnp.concatenate(levels, axis=0)


def match(
    anchors: jax.Array,
    gt_boxes: jax.Array,
    gt_mask: jax.Array | None = None,
    positive_iou: float = 0.7,
    negative_iou: float = 0.3,
    allow_low_quality: bool = True,
) -> jax.Array:
    """The ground-truth box each anchor regresses to: int32 ``[A]``, a gt index, ``-1`` negative, ``-2`` ignored.

    ``anchors [A, 4]``, ``gt_boxes [N, 4]``, ``gt_mask [N]`` (nonzero for real rows; ``None``: all real). An
    anchor whose best IoU with a real gt box is ``>= positive_iou`` gets that box's index (the first on ties);
    ``< negative_iou`` gives ``-1`` (background); in between ``-2``, left out of the loss. Defaults are the RPN's
    (0.7, 0.3); Fast R-CNN's second stage and RetinaNet use 0.5 and 0.5 or 0.4. An image without real gt boxes
    has every anchor negative.

    ``allow_low_quality`` is Faster R-CNN's rule that every gt box gets at least one anchor: each anchor whose
    IoU with a gt box equals that box's highest IoU over all anchors (every anchor of a tie) becomes positive,
    whatever the thresholds. As in the reference code (py-faster-rcnn, torchvision, detectron2) such an anchor
    regresses to its own best gt box, which is a different box when it overlaps another gt box more. Departure:
    a gt box that overlaps no anchor at all (highest IoU 0) forces nothing; the reference code would then mark
    every anchor with IoU 0, i.e. nearly all, as positive for it.
    """
    if gt_boxes.shape[0] == 0:
        return jnp.full(anchors.shape[0], NEGATIVE, jnp.int32)
    gt_mask = jnp.ones(gt_boxes.shape[0], bool) if gt_mask is None else jnp.asarray(gt_mask) > 0
    # -1 is below any real IoU, so a padding column is never any anchor's best nor forces an anchor.
    iou = jnp.where(gt_mask[None, :], iou_matrix(anchors, gt_boxes), -1.0)
    best_iou = iou.max(axis=1)
    best_gt = iou.argmax(axis=1).astype(jnp.int32)
    labels = jnp.where(best_iou >= positive_iou, best_gt, jnp.where(best_iou < negative_iou, NEGATIVE, IGNORED))
    if allow_low_quality:
        highest = iou.max(axis=0)  # [N]
        forced = ((iou == highest[None, :]) & (highest[None, :] > 0)).any(axis=1)
        labels = jnp.where(forced, best_gt, labels)
    return labels.astype(jnp.int32)


def sample_balanced(key: jax.Array, labels: jax.Array, num_samples: int, positive_fraction: float = 0.5) -> jax.Array:
    """A random minibatch of anchors (or proposals) for the loss: bool mask ``[A]``.

    ``labels [A]``: 1 positive, 0 negative, anything else (e.g. -1) ignored; ``match``'s output gives them as
    ``jnp.where(m >= 0, 1, jnp.where(m == -1, 0, -1))``. At most ``int(num_samples * positive_fraction)``
    positives are taken, uniformly at random without replacement among the positives, and negatives fill the rest
    of the ``num_samples`` (fewer when there are not enough), as Faster R-CNN's 256 anchors with at most half
    positive. Sampled positives are ``mask & (labels == 1)``, sampled negatives ``mask & (labels == 0)``.

    Static shapes: each anchor gets a uniform random priority and the ``k`` highest-priority candidates of each
    kind are kept (``lax.top_k``); the top ``k`` of i.i.d. priorities is a uniformly random ``k``-subset.
    ``num_samples`` must be a Python int.
    """
    labels = jnp.asarray(labels)
    a = labels.shape[0]
    max_pos = min(int(num_samples * positive_fraction), a)
    max_all = min(int(num_samples), a)
    is_pos, is_neg = labels == 1, labels == 0
    # Priorities in [0, 1) for candidates and -1 for the rest, so candidates always rank first.
    prio = jax.random.uniform(key, (a,))
    pos = _take_top(jnp.where(is_pos, prio, -1.0), max_pos)
    num_neg = max_all - pos.sum()
    neg = _take_top(jnp.where(is_neg, prio, -1.0), max_all, limit=num_neg)
    return pos | neg


def _take_top(prio: jax.Array, k: int, limit: jax.Array | None = None) -> jax.Array:
    """Mask of the (at most ``limit`` of the) ``k`` highest priorities that are candidates (``prio >= 0``)."""
    mask = jnp.zeros(prio.shape, bool)
    if k == 0:
        return mask
    values, idx = jax.lax.top_k(prio, k)
    take = values >= 0
    if limit is not None:
        take &= jnp.arange(k) < limit
    return mask.at[idx].set(take)

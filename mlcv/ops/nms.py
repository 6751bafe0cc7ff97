"""Greedy non-maximum suppression with static shapes, per image and class-aware over a batch (course §10.2).

Boxes are ``(ymin, xmin, ymax, xmax)`` float32 in continuous pixel coordinates (see ``mlcv.ops.box_coding``).
The output has a fixed length ``max_output``: kept indices into the input in order of decreasing score, padded
with ``-1``, and a bool mask of the real entries. Gather with the mask in mind, e.g.
``jnp.where(mask[:, None], boxes[jnp.maximum(indices, 0)], 0)``.

Conventions (those of OpenCV's ``cv2.dnn.NMSBoxes``, checked in the tests; torchvision's ``nms`` also
suppresses at IoU strictly above the threshold): a box is a candidate when its score is strictly above
``score_threshold``; candidates are visited by decreasing score, equal scores in input order (a stable sort); a
box is suppressed when its IoU with an earlier kept box is strictly above ``iou_threshold`` (IoU equal to the
threshold survives); widths have no ``+ 1``. Two differences from OpenCV: two empty boxes have IoU 0 here
(OpenCV: 1, so it keeps one), and OpenCV's ``top_k`` cuts the candidates before suppression while
``max_output`` cuts the kept list after it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mlcv.ops.box_coding import iou_matrix


def top_k(scores: jax.Array, k: int, valid: jax.Array | None = None) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The ``k`` highest scores of ``[..., N]`` among valid entries: ``(values, indices, mask)``, each ``[..., k]``.

    ``jax.lax.top_k`` with two additions: entries where ``valid`` is false (and scores of ``-inf``) are never
    picked (their ``mask`` entry is false, index ``-1``, value ``-inf``), and ``k > N`` is allowed (the tail is
    padding). Equal scores come in index order. Typical use: the 1000 best anchors of a level before NMS.
    """
    scores = jnp.asarray(scores, jnp.float32)
    if valid is not None:
        scores = jnp.where(jnp.asarray(valid) > 0, scores, -jnp.inf)
    n = scores.shape[-1]
    values, indices = jax.lax.top_k(scores, min(k, n))
    pad = [(0, 0)] * (scores.ndim - 1) + [(0, max(k - n, 0))]
    values = jnp.pad(values, pad, constant_values=-jnp.inf)
    mask = values > -jnp.inf
    indices = jnp.where(mask, jnp.pad(indices, pad), -1).astype(jnp.int32)
    return values, indices, mask


def nms(
    boxes: jax.Array,
    scores: jax.Array,
    iou_threshold: float,
    max_output: int,
    score_threshold: float = -float("inf"),
    valid: jax.Array | None = None,
    classes: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Greedy NMS of one image: ``(indices int32 [max_output], mask bool [max_output])``.

    ``boxes [N, 4]``, ``scores [N]``; ``valid [N]`` (nonzero: a real row) drops padding rows; ``classes [N]``
    (int) makes it class-aware: a box only suppresses boxes of its own class, and the kept list is still one list
    ordered by score across classes. The result is exactly that of the sequential algorithm (sort by score,
    keep the best, drop every later box overlapping it by more than ``iou_threshold``, repeat), truncated to
    the first ``max_output`` kept boxes. ``indices`` index the input and are ``-1`` where ``mask`` is false.

    Cost: an ``N x N`` IoU matrix, then a ``lax.while_loop`` over the sorted boxes that stops as soon as
    ``max_output`` boxes are kept, each step an ``O(N)`` row update. ``max_output`` must be a Python int. For
    1000 boxes about 2-3 ms jitted on a shared 2-core CPU, the IoU matrix most of it.
    """
    boxes = jnp.asarray(boxes, jnp.float32)
    scores = jnp.asarray(scores, jnp.float32)
    n = scores.shape[0]
    if n == 0 or max_output == 0:
        return jnp.full(max_output, -1, jnp.int32), jnp.zeros(max_output, bool)
    candidate = scores > score_threshold
    if valid is not None:
        candidate &= jnp.asarray(valid) > 0
    # Candidates by decreasing score, equal scores by index (a stable sort), then the rest (key +inf).
    order = jnp.argsort(jnp.where(candidate, -scores, jnp.inf), stable=True)
    sorted_boxes = boxes[order]
    overlap = iou_matrix(sorted_boxes, sorted_boxes) > iou_threshold
    if classes is not None:
        sorted_classes = jnp.asarray(classes)[order]
        overlap &= sorted_classes[:, None] == sorted_classes[None, :]
    keep = _greedy(overlap, candidate[order], max_output)
    # The first max_output kept positions: the top priorities n - position among kept ones (top_k compiles
    # faster than jnp.nonzero with a size).
    _, positions, mask = top_k(jnp.where(keep, n - jnp.arange(n), 0).astype(jnp.float32), max_output, keep)
    return jnp.where(mask, order[jnp.maximum(positions, 0)], -1).astype(jnp.int32), mask


def _greedy(overlap: jax.Array, keep: jax.Array, max_output: int) -> jax.Array:
    """Kept flags ``[N]`` of score-sorted boxes; ``overlap[i, j]``: box ``i`` would suppress box ``j``.

    Flags before the step the loop stops at are final; later ones may be stale, but when the loop stops early
    ``max_output`` final boxes precede them, so the first ``max_output`` true flags are right either way.
    """
    n = keep.shape[0]
    later = jnp.arange(n)

    def cond(state: tuple[jax.Array, jax.Array, jax.Array]) -> jax.Array:
        i, _, count = state
        return (i < n) & (count < max_output)

    def body(state: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array, jax.Array]:
        i, keep, count = state
        # lax's dynamic index rather than keep[i]: no negative-index handling, and it compiles faster.
        kept = jax.lax.dynamic_index_in_dim(keep, i, keepdims=False)
        row = jax.lax.dynamic_index_in_dim(overlap, i, keepdims=False)
        # Only a kept box suppresses, and only boxes after it: earlier ones are already decided.
        keep = keep & ~(kept & row & (later > i))
        return i + 1, keep, count + kept.astype(jnp.int32)

    _, keep, _ = jax.lax.while_loop(cond, body, (jnp.int32(0), keep, jnp.int32(0)))
    return keep


def batched_nms(
    boxes: jax.Array,
    scores: jax.Array,
    classes: jax.Array | None,
    iou_threshold: float,
    max_output: int,
    score_threshold: float = -float("inf"),
    valid: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Class-aware NMS of each image of a batch: ``(indices int32 [B, max_output], mask bool [B, max_output])``.

    ``boxes [B, N, 4]``, ``scores [B, N]``, ``classes [B, N]`` int (``None``: class-agnostic), ``valid [B, N]``
    optional. Per image as ``nms(..., classes=...)`` under ``jax.vmap``: boxes of different classes never
    suppress each other. That is done by masking the IoU matrix by class equality rather than torchvision's
    trick of shifting each class's boxes by ``class * (max_coordinate + 1)``, which is exact only while the
    shifted coordinates keep their float32 digits. Indices are per image into axis 1.
    """
    boxes = jnp.asarray(boxes, jnp.float32)
    scores = jnp.asarray(scores, jnp.float32)
    if valid is None:
        valid = jnp.ones(scores.shape, bool)

    def one(b: jax.Array, s: jax.Array, c: jax.Array | None, v: jax.Array) -> tuple[jax.Array, jax.Array]:
        return nms(b, s, iou_threshold, max_output, score_threshold, valid=v, classes=c)

    return jax.vmap(one)(boxes, scores, classes, valid)

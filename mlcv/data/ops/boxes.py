"""Box arrays of the data contract, and the ops that change which keys or rows an example has.

Boxes are ``[N, 4]`` float32 ``(ymin, xmin, ymax, xmax)`` in continuous pixel
coordinates of the current image: pixel row ``i`` spans ``[i, i + 1)``, so a
box covering rows 2..4 inclusive has ``ymin = 2, ymax = 5``. ``box_labels``
``[N]`` and the instance ``masks`` ``[N, H, W]`` are aligned with them row by
row, and so are the optional ``box_crowd`` ``[N]`` (1: a region the detection
evaluator ignores) and ``box_area`` ``[N]`` (the object's area in pixels of the
current image, which decides its size range) of catalogue detection datasets;
after ``pad_boxes(n)`` a ``box_mask`` ``[n]`` (1 valid, 0 padding) marks which
rows are real.
"""

from __future__ import annotations

import numpy as np

from mlcv.data.ops.registry import Example, Op, register

BOX_ROW_KEYS = ("boxes", "box_labels", "box_mask", "masks", "box_crowd", "box_area")
# The per-box rows that follow their box: dropped, zeroed or padded with it.
_ROWS = ("box_labels", "masks", "box_crowd", "box_area")


def as_boxes(boxes: np.ndarray) -> np.ndarray:
    """``boxes`` as an ``[N, 4]`` float32 array (an empty list gives ``[0, 4]``)."""
    return np.asarray(boxes, np.float32).reshape(-1, 4)


def flip_boxes(boxes: np.ndarray, extent: int, axis: int) -> np.ndarray:
    """Mirrors boxes across an image of ``extent`` pixels along ``axis`` (0: rows, 1: columns).

    A coordinate ``c`` becomes ``extent - c``, and the min and max swap: on a 10-wide image, x 2..5 becomes 5..8.
    """
    out = as_boxes(boxes).copy()
    lo, hi = (0, 2) if axis == 0 else (1, 3)
    out[:, lo], out[:, hi] = extent - out[:, hi], extent - out[:, lo]
    return out


def shift_scale_boxes(boxes: np.ndarray, dy: float, dx: float, sy: float = 1.0, sx: float = 1.0) -> np.ndarray:
    """Corners mapped to ``(y - dy) * sy, (x - dx) * sx``: a crop at ``(dy, dx)``, then a resize by ``(sy, sx)``."""
    b = as_boxes(boxes)
    offset = np.array([dy, dx, dy, dx], np.float32)
    factor = np.array([sy, sx, sy, sx], np.float32)
    return (b - offset) * factor


def rotate_boxes(boxes: np.ndarray, degrees: float, height: int, width: int) -> np.ndarray:
    """The axis-aligned box of each box's rotated rectangle where it lies inside the ``height x width`` image.

    Rotation as ``image_fns.rotate_image`` rotates pixels: counter-clockwise as displayed about the image centre
    ``(height / 2, width / 2)``. The rotated rectangle is clipped to the image before taking its extent, so a
    corner turned out of the frame does not widen the box. Exact for an axis-aligned rectangular object; for
    other shapes looser than the tight box of the rotated mask, since a box does not know the shape.
    """
    b = as_boxes(boxes)
    t = np.deg2rad(degrees)
    c, s = np.cos(t), np.sin(t)
    cy, cx = height / 2, width / 2
    # Corners in order around the rectangle, as required by the polygon clipping below.
    ys = b[:, [0, 0, 2, 2]] - cy
    xs = b[:, [1, 3, 3, 1]] - cx
    # y grows downwards, so a counter-clockwise turn as displayed sends +x to -y.
    ry = cy - s * xs + c * ys
    rx = cx + c * xs + s * ys
    out = np.zeros_like(b)
    for i in range(len(b)):
        poly = _clip_polygon(np.stack([ry[i], rx[i]], axis=1), height, width)
        if len(poly):
            out[i] = [poly[:, 0].min(), poly[:, 1].min(), poly[:, 0].max(), poly[:, 1].max()]
    return out


def _clip_polygon(poly: np.ndarray, height: int, width: int) -> np.ndarray:
    """The part of a convex polygon ``[K, 2]`` of ``(y, x)`` vertices inside ``[0, height] x [0, width]``.

    Sutherland-Hodgman: clips against one image border at a time, keeping inside vertices and edge crossings.
    """
    for axis, bound, sign in ((0, 0, 1), (0, height, -1), (1, 0, 1), (1, width, -1)):
        if not len(poly):
            break
        side = sign * (poly[:, axis] - bound)  # >= 0 inside
        kept = []
        for j in range(len(poly)):
            p, q, sp, sq = poly[j - 1], poly[j], side[j - 1], side[j]
            if (sp >= 0) != (sq >= 0):
                kept.append(p + (q - p) * (sp / (sp - sq)))
            if sq >= 0:
                kept.append(q)
        poly = np.array(kept).reshape(-1, 2)
    return poly


def set_boxes(out: Example, boxes: np.ndarray, height: int, width: int, area_scale: float = 1.0) -> Example:
    """Stores transformed ``boxes`` in ``out`` clipped to a ``height x width`` image, dropping empty ones.

    A box with zero area after clipping goes together with its ``box_labels``, ``masks``, ``box_crowd`` and
    ``box_area`` rows (``out``'s masks must already be transformed). When ``box_mask`` is present (after
    ``pad_boxes``) the row count is fixed for batching, so such a box becomes a padding row instead: zero box and
    rows, ``box_mask`` 0. ``box_area`` is multiplied by ``area_scale`` (the transform's pixel-area factor: a resize's
    ``sy * sx``) and by the fraction of the transformed box that the clipping keeps: exact for flips and resizes, a
    box-shaped estimate of what a crop leaves of an object.
    """
    moved = as_boxes(boxes)
    b = np.clip(moved, 0, np.array([height, width, height, width], np.float32))
    valid = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    if "box_area" in out:
        before, after = _box_areas(moved), _box_areas(b)
        kept = np.divide(after, before, out=np.ones_like(before), where=before > 0)
        out["box_area"] = (np.asarray(out["box_area"], np.float32) * np.float32(area_scale) * kept).astype(np.float32)
    if "box_mask" in out:
        valid &= np.asarray(out["box_mask"]) > 0
        b[~valid] = 0
        out["box_mask"] = valid.astype(np.float32)
        for key in _ROWS:
            if key in out:
                rows = np.array(out[key], copy=True)
                rows[~valid] = 0
                out[key] = rows
    elif not valid.all():
        b = b[valid]
        for key in _ROWS:
            if key in out:
                out[key] = np.asarray(out[key])[valid]
    out["boxes"] = b
    return out


def _box_areas(boxes: np.ndarray) -> np.ndarray:
    return np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)


@register("pad_boxes", moves=(*BOX_ROW_KEYS, "box_overflow"))
def pad_boxes(n: int, error: bool = False) -> Op:
    """Pads ``boxes``, ``box_labels`` and ``masks``, ``box_crowd``, ``box_area`` (if present) with zero rows to exactly
    ``n``; adds ``box_mask``.

    More than ``n`` boxes: keeps the first ``n`` (``error=True`` raises ValueError instead) and counts the rest in
    ``box_overflow`` (an int32 scalar, 0 when nothing was dropped), which the detectors log. An example without
    ``boxes`` gets ``n`` padding rows, so examples with and without boxes batch together; a missing
    ``box_labels`` is taken as zeros. Geometric ops after this keep the count (see ``set_boxes``).
    """

    def op(ex: Example, rng: np.random.Generator) -> Example:
        boxes = as_boxes(ex.get("boxes", np.zeros((0, 4), np.float32)))
        count = len(boxes)
        if count > n and error:
            raise ValueError(f"pad_boxes({n}): the example has {count} boxes")
        keep_rows = min(count, n)
        out = dict(ex)
        labels = np.asarray(ex.get("box_labels", np.zeros(count, np.int32)))
        valid = np.asarray(ex.get("box_mask", np.ones(count, np.float32)), np.float32)
        out["boxes"] = _pad_rows(boxes, n, keep_rows)
        out["box_labels"] = _pad_rows(labels.astype(np.int32, copy=False), n, keep_rows)
        out["box_mask"] = _pad_rows(valid, n, keep_rows)
        out["box_overflow"] = np.int32(count - keep_rows)
        for key in ("masks", "box_crowd", "box_area"):
            if key in ex:
                out[key] = _pad_rows(np.asarray(ex[key]), n, keep_rows)
        return out

    return op


def _pad_rows(a: np.ndarray, n: int, keep_rows: int) -> np.ndarray:
    out = np.zeros((n, *a.shape[1:]), a.dtype)
    out[:keep_rows] = a[:keep_rows]
    return out


# keep lives here as the other op that changes the set of keys rather than pixels.
@register("keep", moves=())
def keep(*keys: str) -> Op:
    """Drops every key but ``keys`` (TFDS records may carry ids and file names); rewrites none."""

    def op(ex: Example, rng: np.random.Generator) -> Example:
        return {k: ex[k] for k in keys}

    return op

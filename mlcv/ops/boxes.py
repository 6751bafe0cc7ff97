"""Axis-aligned boxes as ``(x0, y0, x1, y1)`` arrays: area, pairwise IoU and greedy non-maxima suppression.

Coordinates are continuous: a box covers ``[x0, x1) x [y0, y1)`` and its area
is ``(x1 - x0) * (y1 - y0)`` (no ``+ 1``), the convention of OpenCV's ``Rect``,
torchvision and COCO. Boxes are the last axis of size 4, so any leading shape
works where it makes sense.
"""

from __future__ import annotations

import numpy as np


def area(boxes: np.ndarray) -> np.ndarray:
    """Areas of ``(..., 4)`` boxes; degenerate (inverted) boxes have area 0."""
    boxes = np.asarray(boxes, dtype=np.float64)
    w = np.clip(boxes[..., 2] - boxes[..., 0], 0, None)
    h = np.clip(boxes[..., 3] - boxes[..., 1], 0, None)
    return w * h


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of ``a`` (``(N, 4)``) with every box of ``b`` (``(M, 4)``): ``(N, M)``.

    Two empty boxes have IoU 0, not NaN.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, *, max_out: int | None = None) -> np.ndarray:
    """Greedy non-maxima suppression: indices of the kept boxes, highest score first.

    Repeatedly keeps the best remaining box and drops every remaining box whose
    IoU with it is above ``iou_threshold``. Equal scores keep the earlier box
    first (a stable sort), so the result does not depend on the sort algorithm.
    The loop runs once per *kept* box; each step is one vectorised IoU row.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(boxes) != len(scores):
        raise ValueError(f"nms: {len(boxes)} boxes but {len(scores)} scores")
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size and (max_out is None or len(keep) < max_out):
        best = order[0]
        keep.append(int(best))
        rest = order[1:]
        order = rest[iou(boxes[best], boxes[rest])[0] <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def count_overlaps(boxes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """For each box, how many *other* boxes overlap it with IoU above ``iou_threshold``.

    Sliding-window detectors fire several times around a true object and
    rarely around a chance match; this count is the "neighbours" filter that
    OpenCV's ``minNeighbors`` applies before grouping.
    """
    m = iou(boxes, boxes) > iou_threshold
    return m.sum(axis=1) - np.diag(m)

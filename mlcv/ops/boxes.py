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


def _similar(a: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    """``(N, M)``: True where every edge of ``a[i]`` is within ``eps`` x the smaller mean side of ``b[j]``'s edge."""
    wa, ha = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    wb, hb = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    delta = 0.5 * eps * (np.minimum(wa[:, None], wb[None]) + np.minimum(ha[:, None], hb[None]))
    return (np.abs(a[:, None, :] - b[None, :, :]) <= delta[..., None]).all(-1)


def group_rectangles(
    boxes: np.ndarray, *, min_neighbors: int, eps: float = 0.2, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Clusters of similar boxes, averaged, as OpenCV's ``groupRectangles`` does: ``(boxes (K, 4), counts (K,))``.

    Two boxes are similar when each of their four edges differs by at most
    ``eps * (min(w1, w2) + min(h1, h2)) / 2``; clusters are the connected
    components of that relation. A cluster of ``n <= min_neighbors`` boxes is
    dropped; the others become their members' mean box. A kept box lying inside
    another kept box (grown by ``eps`` of its side) is dropped too when that box
    has more members and more than 3, or when it has fewer than 3 members itself:
    detections of a face's eye or mouth inside the face's box. ``min_neighbors``
    of 0 returns every box with count 1 (no grouping).
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if min_neighbors <= 0 or len(boxes) == 0:
        return boxes.copy(), np.ones(len(boxes), np.int64)
    rows, cols = [], []
    for s in range(0, len(boxes), chunk):  # bounded (chunk, N) temporaries
        i, j = np.nonzero(_similar(boxes[s : s + chunk], boxes, eps))
        rows.append(i + s)
        cols.append(j)
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    graph = csr_matrix((np.ones(len(rows), bool), (rows, cols)), shape=(len(boxes), len(boxes)))
    k, label = connected_components(graph, directed=False)
    counts = np.bincount(label, minlength=k)
    mean = np.stack([np.bincount(label, boxes[:, c], minlength=k) for c in range(4)], axis=1) / counts[:, None]
    keep = counts > min_neighbors
    mean, counts = mean[keep], counts[keep]
    kept = ~nested(mean, counts, eps)
    return mean[kept], counts[kept]


def nested(boxes: np.ndarray, counts: np.ndarray, eps: float) -> np.ndarray:
    """OpenCV's filter of grouped boxes: True for a box inside another one that outweighs it.

    Box ``i`` goes when it lies inside box ``j`` grown by ``eps`` of ``j``'s
    sides and ``j`` has more than ``max(3, counts[i])`` members, or ``i`` has
    fewer than 3.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    grow = eps * np.stack([-(boxes[:, 2] - boxes[:, 0]), -(boxes[:, 3] - boxes[:, 1])], axis=1)
    lo, hi = boxes[:, :2] + grow, boxes[:, 2:] - grow
    inside = (boxes[:, None, :2] >= lo[None]).all(-1) & (boxes[:, None, 2:] <= hi[None]).all(-1)
    np.fill_diagonal(inside, False)
    stronger = (counts[None, :] > np.maximum(3, counts)[:, None]) | (counts < 3)[:, None]
    return (inside & stronger).any(axis=1)


def nms_vote(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy NMS whose kept boxes become the mean of the boxes they suppress (box voting).

    Unlike connected components, a cluster is only the boxes overlapping its
    best box (IoU above ``iou_threshold``), so a chain of chance detections
    cannot drag a face's box away. Returns ``(mean boxes (K, 4), members (K,),
    indices of the best boxes (K,))``, best score first.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    means, counts, best = [], [], []
    while order.size:  # once per kept box
        near = iou(boxes[order[0]], boxes[order])[0] > iou_threshold
        near[0] = True
        means.append(boxes[order[near]].mean(axis=0))
        counts.append(int(near.sum()))
        best.append(int(order[0]))
        order = order[~near]
    return np.reshape(means, (-1, 4)), np.asarray(counts, np.int64), np.asarray(best, np.int64)

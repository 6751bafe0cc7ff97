"""Anchor priors by k-means over box shapes with the distance ``1 - IoU`` (YOLOv2, Redmon & Farhadi 2017, §2).

YOLOv2 and YOLOv3 choose their priors (anchor shapes) by clustering the training boxes' sizes rather than by
hand. Boxes are compared as if they shared a centre, so the IoU of two shapes ``(h1, w1)`` and ``(h2, w2)`` is::

    IoU = min(h1, h2) min(w1, w2) / (h1 w1 + h2 w2 - min(h1, h2) min(w1, w2))

and the clustering distance is ``d = 1 - IoU``. With the Euclidean distance on ``(h, w)`` "larger boxes generate
more error than smaller boxes" (the paper): the centroids follow the spread of the large boxes and leave the
small ones with poorly fitting priors; ``1 - IoU`` is scale-free, and a prior is as good as its IoU.

The algorithm is Lloyd's: assign every box to the centroid of highest IoU, move each centroid to the mean
``(h, w)`` of its boxes (the paper does not say mean or median; the mean is what the ``1 - IoU`` objective's
common implementations use), repeat until no assignment changes. Initialisation is k-means++ (Arthur &
Vassilvitskii 2007) with ``d^2 = (1 - IoU)^2`` weights, or ``k`` distinct boxes drawn at random; both from a
NumPy generator seeded by ``seed``, so the priors are a function of the boxes and the seed. A cluster that
loses all its boxes takes the box farthest from its centroid (the lowest best IoU; the first on ties).

NumPy only: the priors are computed once before training, outside any traced step.
"""

from __future__ import annotations

import numpy as np


def shape_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU ``[N, M]`` of shapes ``a [N, 2]`` and ``b [M, 2]`` (``(h, w)``) placed on one centre.

    Shapes with a side ``<= 0`` have area 0 and IoU 0 with everything.
    """
    a = np.maximum(np.asarray(a, np.float64), 0.0)
    b = np.maximum(np.asarray(b, np.float64), 0.0)
    inter = np.minimum(a[:, None, 0], b[None, :, 0]) * np.minimum(a[:, None, 1], b[None, :, 1])
    union = (a[:, 0] * a[:, 1])[:, None] + (b[:, 0] * b[:, 1])[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def mean_best_iou(shapes: np.ndarray, priors: np.ndarray) -> float:
    """The mean over ``shapes [N, 2]`` of each one's IoU with its best prior of ``priors [k, 2]``."""
    return float(shape_iou(shapes, priors).max(axis=1).mean())


def _kmeans_pp(shapes: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: each next centroid drawn with probability proportional to ``(1 - best IoU)^2``."""
    centroids = [shapes[rng.integers(len(shapes))]]
    for _ in range(1, k):
        d = 1.0 - shape_iou(shapes, np.asarray(centroids)).max(axis=1)
        weights = d**2
        total = weights.sum()
        # Every box already coincides with a centroid: any box will do (only with fewer distinct shapes than k).
        p = weights / total if total > 0 else np.full(len(shapes), 1.0 / len(shapes))
        centroids.append(shapes[rng.choice(len(shapes), p=p)])
    return np.asarray(centroids, np.float64)


def kmeans_anchors(
    shapes: np.ndarray, k: int = 9, *, seed: int = 0, init: str = "kmeans++", max_iter: int = 300
) -> tuple[np.ndarray, float]:
    """``k`` priors ``[k, 2]`` ``(h, w)`` of ``shapes [N, 2]`` by k-means with the distance ``1 - IoU``.

    Returns the priors sorted by area (smallest first; equal areas by height) and the mean IoU of the shapes
    with their nearest prior (:func:`mean_best_iou`). ``init`` is ``"kmeans++"`` or ``"random"`` (``k``
    distinct shapes). Shapes with a side ``<= 0`` (empty boxes) are left out.

    Raises:
      ValueError: fewer usable shapes than ``k``, ``k < 1`` or an unknown ``init``.
    """
    shapes = np.asarray(shapes, np.float64).reshape(-1, 2)
    shapes = shapes[(shapes > 0).all(axis=1)]
    if k < 1 or len(shapes) < k:
        raise ValueError(f"k-means of {len(shapes)} box shapes into k = {k} priors needs 1 <= k <= {len(shapes)}")
    rng = np.random.default_rng(seed)
    if init == "kmeans++":
        centroids = _kmeans_pp(shapes, k, rng)
    elif init == "random":
        centroids = shapes[rng.choice(len(shapes), size=k, replace=False)].copy()
    else:
        raise ValueError(f"init must be 'kmeans++' or 'random', got {init!r}")
    assign = None
    for _ in range(max_iter):
        iou = shape_iou(shapes, centroids)
        new = iou.argmax(axis=1)
        if assign is not None and np.array_equal(new, assign):
            break
        assign = new
        for c in range(k):
            members = shapes[assign == c]
            if len(members):
                centroids[c] = members.mean(axis=0)
            else:  # an emptied cluster restarts on the worst-fitting box
                worst = int(np.argmin(iou.max(axis=1)))
                centroids[c] = shapes[worst]
                assign[worst] = c
    order = np.lexsort((centroids[:, 0], centroids[:, 0] * centroids[:, 1]))
    priors = centroids[order]
    return priors, mean_best_iou(shapes, priors)

"""Verification of pairs: "same identity or not?" decided by thresholding a distance (course §11.6).

- :func:`make_pairs`: the split's balanced pairs, as LFW's protocol balances them.
- :func:`pair_distances`: Euclidean, cosine, or DeepFace's weighted L1 distance
  ``d(f1, f2) = sum_k alpha_k |f1_k - f2_k|`` on normalised features (Taigman et al. 2014; the course's
  eq. 64 with weights), whose normalisation and weights :func:`deepface_scale` and :func:`fit_deepface_alpha`
  learn on a training split.
- :func:`roc_curve`, :func:`roc_auc`, :func:`tar_at_far`, :func:`best_threshold`, :func:`accuracy_at`.

A pair is accepted as "same" when its distance is <= the threshold. Ties: pairs at equal distances are
accepted together or not at all, so a threshold is one of the distinct distances (or below them all), and
the ROC curve has one point per distinct distance, as scikit-learn's ``roc_curve`` of the score
``-distance`` has; the area under it counts a positive and a negative pair at the same distance as half
ordered (the Mann-Whitney statistic).
"""

from __future__ import annotations

import numpy as np

DISTANCES = ("euclidean", "cosine", "deepface")


def _draw(counts: np.ndarray, first_partner: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """``m`` distinct pairs drawn uniformly from those that ``counts`` enumerates: item a has partners
    ``first_partner[a], first_partner[a] + 1, ...`` (``counts[a]`` of them). Returns ``[m, 2]``, by rank."""
    total = int(counts.sum())
    flat = np.arange(total) if m >= total else np.sort(rng.choice(total, size=m, replace=False))
    cum = np.cumsum(counts)
    a = np.searchsorted(cum, flat, side="right")
    b = first_partner[a] + flat - (cum[a] - counts[a])
    return np.stack([a, b], 1)


def make_pairs(labels: np.ndarray, seed: int = 0, max_pairs: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Balanced verification pairs of a split: every positive pair, and as many negative ones, drawn at random.

    LFW's protocol tests equal numbers of matched and mismatched pairs; here the positives are all
    ``sum_c n_c (n_c - 1) / 2`` pairs of items with the same label and the negatives a uniform sample without
    replacement (``seed``) of the pairs with different labels, of the same size. When the negatives are fewer,
    the positives are sampled down to their number, so the pairs stay balanced; ``max_pairs`` caps the total,
    sampling ``max_pairs // 2`` of each. Pairs are unordered and never pair an item with itself. Neither list
    is built in full: a pair is drawn by its rank, so a split of 12,000 items costs only the pairs drawn.

    Returns:
      ``(pairs, same)``: ``pairs`` ``[M, 2]`` int64 indices into ``labels`` (the lower first), the positives
      first; ``same`` ``[M]`` bool.
    """
    labels = np.asarray(labels).ravel()
    n = len(labels)
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    end = np.searchsorted(sorted_labels, sorted_labels, side="right")  # one past each label's block
    items = np.arange(n)
    pos_counts, neg_counts = end - items - 1, n - end  # partners after a within its block, and beyond it
    m = min(int(pos_counts.sum()), int(neg_counts.sum()))
    if max_pairs is not None:
        m = min(m, int(max_pairs) // 2)
    rng = np.random.default_rng(seed)
    ranked = np.concatenate([_draw(pos_counts, items + 1, m, rng), _draw(neg_counts, end, m, rng)])
    pairs = np.sort(order[ranked], axis=1).astype(np.int64)
    return pairs.reshape(-1, 2), np.r_[np.ones(m, bool), np.zeros(m, bool)]


def deepface_scale(features: np.ndarray) -> np.ndarray:
    """DeepFace's normalisation constants: each component's largest absolute value over a (training) split.

    A component that is zero throughout gets 1, so that it stays zero rather than NaN.
    """
    features = np.asarray(features, np.float64)
    scale = np.max(np.abs(features), axis=0) if len(features) else np.ones(features.shape[1:])
    return np.where(scale > 0, scale, 1.0)


def deepface_normalise(features: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Each component divided by its ``scale`` (:func:`deepface_scale`), then each vector L2-normalised."""
    x = np.asarray(features, np.float64) / scale
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def pair_distances(
    emb: np.ndarray,
    pairs: np.ndarray,
    distance: str = "euclidean",
    alpha: np.ndarray | None = None,
    chunk: int = 65536,
) -> np.ndarray:
    """The distance of each pair of rows of ``emb`` (float64, ``chunk`` pairs at a time).

    ``"euclidean"``: ``||f1 - f2||``; ``"cosine"``: ``1 - cos(f1, f2)``; ``"deepface"``:
    ``sum_k alpha_k |f1_k - f2_k|`` of ``emb`` as given (normalise it first with :func:`deepface_normalise`),
    ``alpha`` all ones when None.
    """
    if distance not in DISTANCES:
        raise ValueError(f"distance={distance!r}; valid: {', '.join(DISTANCES)}")
    emb = np.asarray(emb, np.float64)
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    out = np.empty(len(pairs))
    for start in range(0, len(pairs), chunk):
        a, b = emb[pairs[start : start + chunk, 0]], emb[pairs[start : start + chunk, 1]]
        if distance == "euclidean":
            d = np.linalg.norm(a - b, axis=1)
        elif distance == "cosine":
            norms = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
            d = 1.0 - np.sum(a * b, 1) / norms
        else:
            d = np.abs(a - b) @ (np.ones(emb.shape[1]) if alpha is None else np.asarray(alpha, np.float64))
        out[start : start + len(d)] = d
    return out


def fit_deepface_alpha(features: np.ndarray, pairs: np.ndarray, same: np.ndarray, c: float = 1.0) -> np.ndarray:
    """The weights ``alpha_k`` of DeepFace's distance, learned on (training) pairs of normalised features.

    DeepFace learns them with an SVM on ``|f1 - f2|``; here scikit-learn's ``LogisticRegression`` (L2,
    inverse strength ``c``) predicts "same" from ``|f1 - f2|`` with each component standardised by its
    spread over the pairs, so that the penalty treats components alike. A component whose difference makes
    "same" less likely (a negative coefficient) gets the weight ``-coef / std``; one that does not, 0: a
    distance weight is never negative. The weights are scaled to mean 1 (the scale is immaterial once a
    threshold is fitted); all zeros when no component separates the pairs, or when the pairs are all of one
    kind.
    """
    from sklearn.linear_model import LogisticRegression

    x = np.abs(features[pairs[:, 0]] - features[pairs[:, 1]])
    same = np.asarray(same, bool)
    if len(x) == 0 or same.all() or not same.any():
        return np.zeros(features.shape[1])
    std = x.std(0)
    std = np.where(std > 0, std, 1.0)
    coef = LogisticRegression(C=c, max_iter=1000).fit(x / std, same).coef_[0]
    alpha = np.maximum(-coef / std, 0.0)
    return alpha / alpha.mean() if alpha.any() else alpha


def _counts(distances: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Accepted positive and negative pairs at each distinct distance taken as threshold (increasing)."""
    d = np.asarray(distances, np.float64).ravel()
    same = np.asarray(same, bool).ravel()
    order = np.argsort(d, kind="stable")
    d, same = d[order], same[order]
    last = np.r_[np.flatnonzero(np.diff(d)), d.size - 1] if d.size else np.zeros(0, int)
    tp = np.cumsum(same, dtype=np.float64)[last]
    return tp, (last + 1) - tp, d[last]


def roc_curve(
    distances: np.ndarray, same: np.ndarray, drop_intermediate: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(far, tar, thresholds)``: false and true accept rates when accepting distances <= each threshold.

    scikit-learn's ``roc_curve(same, -distances)`` with its thresholds negated: the first point accepts
    nothing (threshold ``-inf``), then one point per distinct distance, increasing. ``drop_intermediate``
    drops the points on a straight line between their neighbours, as scikit-learn does. A rate is NaN when
    there are no pairs of its kind.
    """
    tp, fp, thresholds = _counts(distances, same)
    if drop_intermediate and tp.size > 2:
        keep = np.r_[True, np.logical_or(np.diff(fp, 2), np.diff(tp, 2)), True]
        tp, fp, thresholds = tp[keep], fp[keep], thresholds[keep]
    tp, fp, thresholds = np.r_[0.0, tp], np.r_[0.0, fp], np.r_[-np.inf, thresholds]
    with np.errstate(invalid="ignore", divide="ignore"):
        return fp / fp[-1], tp / tp[-1], thresholds


def roc_auc(distances: np.ndarray, same: np.ndarray) -> float:
    """The area under the ROC curve: the chance that a positive pair is nearer than a negative one (ties half).

    NaN without pairs of both kinds.
    """
    far, tar, _ = roc_curve(distances, same)
    if not (np.isfinite(far[-1]) and np.isfinite(tar[-1])):
        return float("nan")
    return float(np.trapezoid(tar, far))


def tar_at_far(distances: np.ndarray, same: np.ndarray, far: float) -> float:
    """The true accept rate at the largest threshold whose false accept rate is <= ``far``.

    The threshold that accepts nothing always qualifies, so the value is 0 where even the nearest pairs bring
    too many false accepts. NaN without pairs of both kinds.
    """
    fars, tars, _ = roc_curve(distances, same)
    if not (np.isfinite(fars[-1]) and np.isfinite(tars[-1])):
        return float("nan")
    return float(tars[np.flatnonzero(fars <= far)[-1]])


def best_threshold(distances: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """``(threshold, accuracy)``: the threshold that classifies the most pairs correctly, and its accuracy.

    Of several thresholds with the best accuracy, the smallest. The threshold returned lies halfway between
    that distance and the next larger one, which classifies this split's pairs identically and sits in the
    gap for the next split; it is just below the smallest distance when rejecting every pair is best, the
    largest distance when accepting all is. NaN without pairs.
    """
    tp, fp, thresholds = _counts(distances, same)
    if tp.size == 0:
        return float("nan"), float("nan")
    positives, total = tp[-1], tp[-1] + fp[-1]
    correct = np.r_[total - positives, tp + (total - positives - fp)]  # first: reject every pair
    best = int(np.argmax(correct))
    if best == 0:
        threshold = float(np.nextafter(thresholds[0], -np.inf))
    elif best == len(thresholds):
        threshold = float(thresholds[-1])
    else:
        lo, hi = thresholds[best - 1], thresholds[best]
        threshold = float(lo + (hi - lo) / 2) if lo + (hi - lo) / 2 < hi else float(lo)
    return threshold, float(correct[best] / total)


def accuracy_at(distances: np.ndarray, same: np.ndarray, threshold: float) -> float:
    """The fraction of pairs classified correctly when accepting distances <= ``threshold``; NaN without pairs."""
    d = np.asarray(distances, np.float64).ravel()
    if d.size == 0:
        return float("nan")
    return float(np.mean((d <= threshold) == np.asarray(same, bool).ravel()))

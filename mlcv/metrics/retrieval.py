"""Retrieval metrics of an embedding, leave-one-out: every item of a split is a query, the rest its gallery.

- :func:`recall_at_k`: the fraction of queries with at least one item of their label among their k nearest.
- :func:`map_at_r` and :func:`r_precision` (Musgrave, Belongie & Lim, "A metric learning reality check",
  ECCV 2020): R is the number of other items with the query's label; R-precision is the fraction of the R
  nearest that share it, MAP@R the mean over those R ranks of the precision at each rank that shares it.
- :func:`knn_accuracy`: each query classified by a k-NN vote over the rest (:mod:`mlcv.ops.knn`).
- :func:`enrol_and_identify`: face recognition as kNN over enrolled embeddings; new identities are enrolled
  by adding their embeddings to the gallery, without retraining.

Distances are Euclidean, computed in float32 on the device one chunk of queries at a time
(:func:`mlcv.ops.knn.reduced_distances`), so memory holds ``batch_size x N`` distances, never ``N x N``.
A query whose label no other item has (R = 0) can retrieve nothing relevant; it is left out of the ranking
metrics, as pytorch-metric-learning's ``AccuracyCalculator`` leaves it out. A metric without any query
left is NaN, and so is every metric of embeddings that are not finite.

Ties. Items at the same distance from a query have no order, so the ranking metrics are their expected
value when such items are ordered uniformly at random: with R = 2 and three items tied at ranks 1-3, one of
them relevant, R-precision counts 2/3 of a match. The metrics are then functions of the distances alone, not of
the split's order (with the lowest-index-first rule of :mod:`mlcv.ops.knn`, a collapsed embedding whose
items all coincide would score whatever the split's order happened to put first). Where no distances tie the
expectation is the plain value. :func:`knn_accuracy` is a classifier's accuracy, and a classifier has to
decide: it follows :mod:`mlcv.ops.knn`'s rules (the lower index nearer, the lowest class on a tied vote).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mlcv.config import ConfigError
from mlcv.ops import knn


@functools.partial(jax.jit, static_argnames=("depth",))
def _chunk_ranking(
    queries: jax.Array, query_index: jax.Array, query_labels: jax.Array, refs: jax.Array, labels: jax.Array, depth: int
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """The ``depth`` nearest other items of each query: their distances and relevance, and the tie at the last.

    Returns sorted squared distances ``[b, depth]``, whether each of those items shares the query's label,
    and, over the whole gallery, how many items lie at the last distance and how many of those are relevant:
    the tie group that straddles the cut extends past it.
    """
    d = knn.reduced_distances(queries, refs, 2.0)
    d = d.at[jnp.arange(d.shape[0]), query_index].set(jnp.inf)  # the query itself is not in its gallery
    neg, idx = jax.lax.top_k(-d, depth)
    top = -neg
    relevant = labels[None, :] == query_labels[:, None]
    at_last = d == top[:, -1:]
    return top, labels[idx] == query_labels[:, None], at_last.sum(1), (at_last & relevant).sum(1)


def _ranked_chunks(
    emb: np.ndarray, labels: np.ndarray, depth: int, batch_size: int
) -> Iterator[tuple[slice, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per chunk of queries: ``(rows, tie-group start, group size, group positives, positives before)``.

    For each of the ``depth`` ranks of each query: the first rank of the group of items tied with it, the
    group's size and number of relevant items (over the whole gallery), and the number of relevant items
    ranked strictly before the group, which is exact, since every earlier group lies wholly before it.
    """
    refs = jnp.asarray(emb, jnp.float32)
    labels_j = jnp.asarray(np.unique(labels, return_inverse=True)[1].ravel().astype(np.int32))
    n = len(emb)
    batch = min(batch_size, n)
    ranks = np.arange(depth)
    for start in range(0, n, batch):
        rows = slice(start, min(start + batch, n))
        index = np.arange(start, start + batch) % n  # the last chunk padded to the same shape with any rows
        top, rel, last_size, last_pos = jax.device_get(
            _chunk_ranking(refs[index], jnp.asarray(index), labels_j[index], refs, labels_j, depth)
        )
        real = rows.stop - start
        top, rel, last_size, last_pos = top[:real], rel[:real], last_size[:real], last_pos[:real]
        new = np.ones(top.shape, bool)
        new[:, 1:] = top[:, 1:] != top[:, :-1]
        first = np.maximum.accumulate(np.where(new, ranks, 0), axis=1)
        flat = (np.cumsum(new, 1) - 1) + depth * np.arange(real)[:, None]
        size = np.bincount(flat.ravel(), minlength=real * depth)[flat].astype(np.float64)
        pos = np.bincount(flat.ravel(), weights=rel.ravel(), minlength=real * depth)[flat]
        in_last = top == top[:, -1:]
        size = np.where(in_last, last_size[:, None], size)
        pos = np.where(in_last, last_pos[:, None], pos)
        before = np.take_along_axis(np.cumsum(rel, 1) - rel, first, 1).astype(np.float64)
        yield rows, first, size, pos, before


def _others_with_label(labels: np.ndarray) -> np.ndarray:
    """R of each item: how many other items share its label."""
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return counts[inverse.ravel()] - 1


def _check(emb: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    emb = np.asarray(emb)
    labels = np.asarray(labels).ravel()
    if emb.ndim != 2 or len(emb) != len(labels):
        raise ValueError(f"embeddings {emb.shape} must be [N, D] with one label each ({labels.shape})")
    return emb, labels


def retrieval_metrics(
    emb: np.ndarray, labels: np.ndarray, ks: Sequence[int] = (1, 2, 4, 8), batch_size: int = 256
) -> dict[str, float]:
    """``recall_at_<k>`` for each k, ``map_at_r`` and ``r_precision`` in one pass over the distances.

    Each is the mean over queries with R >= 1 of the expected value under random order of tied distances
    (module docstring). A k of N - 1 or more retrieves the whole gallery.
    """
    emb, labels = _check(emb, labels)
    names = [f"recall_at_{k}" for k in ks] + ["map_at_r", "r_precision"]
    if any(int(k) < 1 for k in ks):
        raise ValueError(f"recall_at_k: every k must be >= 1, not {tuple(ks)}")
    r = _others_with_label(labels)
    valid = r > 0
    n = len(labels)
    if not valid.any() or not np.isfinite(emb).all():
        return dict.fromkeys(names, float("nan"))
    depth = min(n - 1, max(max(ks, default=1), int(r.max())))
    ks_capped = [min(int(k), n - 1) for k in ks]
    sums = dict.fromkeys(names, 0.0)
    ranks = np.arange(depth)
    for rows, first, size, pos, before in _ranked_chunks(emb, labels, depth, batch_size):
        keep = valid[rows]
        rq = r[rows][keep][:, None].astype(np.float64)
        first, size, pos, before = first[keep], size[keep], pos[keep], before[keep]
        rho = pos / size
        # E[rel_i * (relevant items at ranks <= i)]: the group's share, times one plus those ranked before the
        # group, plus the pairs drawn from the group's own relevant items (without replacement) at ranks before i.
        pair = np.where(size > 1, pos * (pos - 1) / np.maximum(size * (size - 1), 1), 0.0)
        rel_cum = rho * (1 + before) + (ranks - first) * pair
        within_r = ranks < rq
        sums["r_precision"] += float(np.sum(np.sum(rho * within_r, 1) / rq[:, 0]))
        sums["map_at_r"] += float(np.sum(np.sum(rel_cum / (ranks + 1) * within_r, 1) / rq[:, 0]))
        for name, k in zip(names[: len(ks)], ks_capped, strict=True):
            i = k - 1
            g, p, taken = size[:, i], pos[:, i], k - first[:, i]
            # P(none of the `taken` items drawn from the straddling group is relevant): hypergeometric.
            miss = np.ones(len(g))
            for j in range(int(taken.max(initial=0))):
                miss *= np.where(j < taken, np.maximum(g - p - j, 0) / np.maximum(g - j, 1), 1.0)
            sums[name] += float(np.sum(np.where(before[:, i] > 0, 1.0, 1.0 - miss)))
    return {name: total / int(valid.sum()) for name, total in sums.items()}


def recall_at_k(
    emb: np.ndarray, labels: np.ndarray, ks: Sequence[int] = (1, 2, 4, 8), batch_size: int = 256
) -> dict[int, float]:
    """Recall@k for each k: the fraction of queries with an item of their label among their k nearest others."""
    scores = retrieval_metrics(emb, labels, ks, batch_size)
    return {int(k): scores[f"recall_at_{k}"] for k in ks}


def map_at_r(emb: np.ndarray, labels: np.ndarray, batch_size: int = 256) -> float:
    """MAP@R: per query, ``(1/R) sum_{i<=R} P(i) rel(i)`` over its R nearest others, averaged over queries."""
    return retrieval_metrics(emb, labels, (1,), batch_size)["map_at_r"]


def r_precision(emb: np.ndarray, labels: np.ndarray, batch_size: int = 256) -> float:
    """R-precision: the fraction of each query's R nearest others that share its label, averaged over queries."""
    return retrieval_metrics(emb, labels, (1,), batch_size)["r_precision"]


def knn_accuracy(emb: np.ndarray, labels: np.ndarray, k: int = 5, batch_size: int = 256) -> float:
    """Leave-one-out accuracy of the k-NN classifier: each item voted on by its k nearest others.

    Ties follow :mod:`mlcv.ops.knn` (the lower index nearer, the lowest label on a tied vote), as
    scikit-learn's brute ``KNeighborsClassifier`` breaks vote ties. k is capped at N - 1; NaN below two items
    or with non-finite embeddings.
    """
    emb, labels = _check(emb, labels)
    n = len(labels)
    if n < 2 or not np.isfinite(emb).all():
        return float("nan")
    k = min(int(k), n - 1)
    classes, y = np.unique(labels, return_inverse=True)
    idx = knn.neighbours(emb, emb, k + 1, 2.0, batch_size)
    # Drop the query itself; where exact duplicates of lower index crowd it out, drop the farthest instead.
    own = idx == np.arange(n)[:, None]
    own[~own.any(1), -1] = True
    others = idx[~own].reshape(n, k)
    return float(np.mean(knn.vote(y.ravel()[others], len(classes)) == y.ravel()))


def enrolment_split(labels: np.ndarray, per_class: int, config_key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(gallery, probes)`` indices: the first ``per_class`` items of each label in split order, and the rest.

    Raises:
      ConfigError (naming ``config_key``): ``per_class < 1``, or a label with ``per_class`` items or fewer,
      which would leave it without probes.
    """
    labels = np.asarray(labels).ravel()
    if per_class < 1:
        raise ConfigError(f"{config_key}={per_class}: fewer than one item per identity leaves the gallery empty")
    values, counts = np.unique(labels, return_counts=True)
    short = values[counts <= per_class]
    if short.size:
        raise ConfigError(
            f"{config_key}={per_class}: {short.size} identities of this split have {per_class} items or fewer "
            f"(e.g. label {short[0]} with {counts[counts <= per_class][0]}), which leaves them no probe to identify"
        )
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    rank = np.arange(len(labels)) - np.searchsorted(sorted_labels, sorted_labels)  # rank within its label
    enrolled = np.zeros(len(labels), bool)
    enrolled[order[rank < per_class]] = True
    return np.flatnonzero(enrolled), np.flatnonzero(~enrolled)


def enrol_and_identify(
    gallery_emb: np.ndarray,
    gallery_labels: np.ndarray,
    probe_emb: np.ndarray,
    k: int = 1,
    config_key: str = "k",
    batch_size: int = 256,
) -> np.ndarray:
    """The identity of each probe: a k-NN vote (Euclidean) over the enrolled gallery (course §11.6).

    Enrolling an identity is adding its embeddings to the gallery; the network is not retrained. Ties follow
    :mod:`mlcv.ops.knn`.

    Raises:
      ConfigError (naming ``config_key``, the setting that chose the gallery): the gallery is empty or holds
      fewer than k embeddings.
    """
    gallery_emb = np.asarray(gallery_emb)
    if len(gallery_emb) == 0:
        raise ConfigError(f"{config_key}: the gallery is empty; enrol at least one embedding to identify probes")
    if not 1 <= k <= len(gallery_emb):
        raise ConfigError(f"{config_key}: a {k}-NN vote needs at least {k} enrolled embeddings, not {len(gallery_emb)}")
    return knn.predict(gallery_emb, np.asarray(gallery_labels).ravel(), np.asarray(probe_emb), int(k), 2.0, batch_size)

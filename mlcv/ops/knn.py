"""k-nearest neighbours with the l_p distance, and (k, p) chosen by grid search on the validation split.

Shared by the classic kNN method (:mod:`mlcv.classic.methods.knn`) and the retrieval metrics
(:mod:`mlcv.metrics.retrieval`), which is why it is an op.

Tie rules, chosen so that the result is a function of the data alone:

- **Distance ties**: among training points at the same distance, the one
  with the lower index in the training set is nearer (a stable sort on
  distance; :func:`jax.lax.top_k` keeps the lower index first on ties).
- **Vote ties**: the class counts of the k neighbours are compared and the
  lowest class label among the most frequent wins (``argmax`` of the counts).

scikit-learn's brute ``KNeighborsClassifier`` breaks vote ties the same way,
but not distance ties: its heap of the k nearest keeps whichever tied point
the heap's order and its thread chunks leave, so where a distance tie
straddles the k-th neighbour and the tied points differ in label, the two
can predict differently. On digits every other query gets the same
prediction (``tests/classic/test_knn.py``).

Distances are computed in JAX, jitted, one chunk of queries at a time, so the
distance matrix held in memory is ``batch_size x n_train``, never the whole
``n_queries x n_train``; XLA fuses the per-feature differences into the
reduction, so no ``batch_size x n_train x features`` array exists either.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np


def reduced_distances(queries: jax.Array, refs: jax.Array, p: float) -> jax.Array:
    """``sum_j |q_j - r_j|^p`` for every (query, reference) pair: (n_q, n_r).

    This is the l_p distance raised to the power p (for ``p = inf``, the l_inf
    distance itself), which orders neighbours the same way without the root.
    For p = 2 it uses ``|q|^2 - 2 q.r + |r|^2`` (a matrix product, the fast
    path); in float32 that is exact for small integer data such as digits and
    clipped at zero where rounding would make it negative.
    """
    if p == 2:
        sq = jnp.sum(queries**2, 1)[:, None] - 2 * queries @ refs.T + jnp.sum(refs**2, 1)[None, :]
        # + 0.0 turns a -0.0 into 0.0, so exact duplicates tie with each other under top_k's total order.
        return jnp.maximum(sq, 0.0) + 0.0
    diff = jnp.abs(queries[:, None, :] - refs[None, :, :])
    if math.isinf(p):
        return jnp.max(diff, -1)
    if p == 1:
        return jnp.sum(diff, -1)
    return jnp.sum(diff**p, -1)


@functools.partial(jax.jit, static_argnames=("k", "p"))
def _chunk_neighbours(queries: jax.Array, refs: jax.Array, k: int, p: float) -> jax.Array:
    _, idx = jax.lax.top_k(-reduced_distances(queries, refs, p), k)
    return idx


def neighbours(queries: np.ndarray, refs: np.ndarray, k: int, p: float, batch_size: int = 256) -> np.ndarray:
    """Indices into ``refs`` of the k nearest references of each query, nearest first: (n_q, k).

    Ties in distance go to the lower reference index. Queries are processed
    ``batch_size`` at a time; the last chunk is padded to the same shape so
    that one compiled function serves every chunk.
    """
    queries = np.asarray(queries, np.float32)
    refs_j = jnp.asarray(refs, jnp.float32)
    if not 1 <= k <= refs_j.shape[0]:
        raise ValueError(f"k={k} must be between 1 and the number of references ({refs_j.shape[0]})")
    n = len(queries)
    out = np.empty((n, k), np.int64)
    batch = min(batch_size, max(n, 1))
    for start in range(0, n, batch):
        chunk = queries[start : start + batch]
        pad = batch - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.zeros((pad, chunk.shape[1]), np.float32)])
        idx = _chunk_neighbours(jnp.asarray(chunk), refs_j, k, float(p))
        out[start : start + batch - pad] = np.asarray(idx)[: batch - pad]
    return out


def vote(neighbour_labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Majority vote over the last axis of class indices in ``[0, num_classes)``; ties go to the lowest class."""
    # numpy, not JAX: a few small arrays of new shapes each call, where jax would compile every op anew.
    counts = (np.asarray(neighbour_labels)[..., None] == np.arange(num_classes)).sum(-2)
    return np.argmax(counts, -1)  # argmax returns the first maximum: the lowest class


def predict(
    train_x: np.ndarray, train_y: np.ndarray, queries: np.ndarray, k: int, p: float, batch_size: int = 256
) -> np.ndarray:
    """kNN labels of ``queries`` (in ``train_y``'s label values) under the tie rules of the module docstring."""
    classes, y = np.unique(train_y, return_inverse=True)
    idx = neighbours(queries, train_x, k, p, batch_size)
    return classes[vote(y[idx], len(classes))]


def grid_accuracy(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    ks: list[int],
    ps: list[float],
    batch_size: int = 256,
) -> np.ndarray:
    """Validation accuracy of every (p, k) pair: (len(ps), len(ks)).

    The neighbours are searched once per p for the largest k; a smaller k's
    neighbours are the first k of that list (the tie rule makes them the
    same as a search for k alone).
    """
    classes, y = np.unique(train[1], return_inverse=True)
    acc = np.zeros((len(ps), len(ks)))
    for i, p in enumerate(ps):
        idx = neighbours(val[0], train[0], max(ks), p, batch_size)
        for j, k in enumerate(ks):
            acc[i, j] = np.mean(classes[vote(y[idx[:, :k]], len(classes))] == val[1])
    return acc

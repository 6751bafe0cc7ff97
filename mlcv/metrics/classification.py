"""Classification metrics, all derived from one confusion matrix.

Evaluation accumulates the confusion matrix batch by batch on the device
(padding masked out) and derives every metric from the total, so a metric
over a split never depends on how it was batched.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def confusion_matrix(
    labels: jax.Array, predictions: jax.Array, num_classes: int, weights: jax.Array | None = None
) -> jax.Array:
    """``C[i, j]`` = (weighted) number of examples of class i predicted as j.

    One bincount (a scatter-add into ``num_classes**2`` bins) of ``label * C + prediction``: work
    and memory linear in the examples, where a product of one-hot matrices needs two ``[N, C]``
    matrices, too much for the millions of pixels of a segmentation batch. ``labels``,
    ``predictions`` and ``weights`` share one shape (any, flattened). Pairs with a label or a
    prediction outside ``[0, num_classes)`` are dropped. The counts have the dtype of ``weights``
    (float32 when None or boolean; int32 weights count exactly beyond float32's 2**24).
    """
    c = num_classes
    # int32 first: uint8 label maps would overflow label * C.
    labels = jnp.ravel(jnp.asarray(labels)).astype(jnp.int32)
    predictions = jnp.ravel(jnp.asarray(predictions)).astype(jnp.int32)
    if weights is None:
        weights = jnp.ones(labels.shape, jnp.float32)
    weights = jnp.ravel(jnp.asarray(weights))
    if weights.dtype == jnp.bool_:
        weights = weights.astype(jnp.float32)
    # bincount would clip a negative index into bin 0, and a label out of range could land in another
    # row: give such pairs weight 0 instead.
    valid = (labels >= 0) & (labels < c) & (predictions >= 0) & (predictions < c)
    index = jnp.where(valid, labels * c + predictions, 0)
    counts = jnp.bincount(index, weights=jnp.where(valid, weights, jnp.zeros_like(weights)), length=c * c)
    return counts.reshape(c, c)


def accuracy(confusion: np.ndarray) -> float:
    """Fraction of examples on the diagonal."""
    total = confusion.sum()
    return float(np.trace(confusion) / total) if total else float("nan")


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """Recall of each class (NaN for a class with no examples)."""
    support = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.diag(confusion) / support


def per_class_iou(confusion: np.ndarray) -> np.ndarray:
    """Intersection over union of each class, C_ii / (row_i + col_i - C_ii); NaN for a class absent from both."""
    confusion = np.asarray(confusion)
    inter = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.maximum(union, 1), np.nan)


def summarize_confusion(confusion: np.ndarray) -> dict[str, float]:
    """Scalar metrics of a confusion matrix: accuracy and mean per-class accuracy."""
    return {
        "accuracy": accuracy(confusion),
        "mean_class_accuracy": float(np.nanmean(per_class_accuracy(confusion))),
    }

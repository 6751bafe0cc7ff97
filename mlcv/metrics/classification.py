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
    """``C[i, j]`` = (weighted) number of examples of class i predicted as j."""
    if weights is None:
        weights = jnp.ones(labels.shape, jnp.float32)
    true = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32) * weights[:, None]
    pred = jax.nn.one_hot(predictions, num_classes, dtype=jnp.float32)
    return true.T @ pred


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

"""Metrics: classification metrics from confusion matrices."""

from mlcv.metrics.classification import (
    accuracy,
    confusion_matrix,
    per_class_accuracy,
    summarize_confusion,
)

__all__ = ["accuracy", "confusion_matrix", "per_class_accuracy", "summarize_confusion"]

"""Metrics: classification and segmentation metrics from confusion matrices."""

from mlcv.metrics.classification import (
    accuracy,
    confusion_matrix,
    per_class_accuracy,
    per_class_iou,
    summarize_confusion,
)

__all__ = ["accuracy", "confusion_matrix", "per_class_accuracy", "per_class_iou", "summarize_confusion"]

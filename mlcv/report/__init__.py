"""Metric writers (JSONL, TensorBoard) and plots of a workdir."""

from mlcv.report.plots import plot_confusion, plot_curves
from mlcv.report.writers import MetricWriter, read_metrics

__all__ = ["MetricWriter", "plot_confusion", "plot_curves", "read_metrics"]

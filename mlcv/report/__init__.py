"""Metric writers (JSONL, TensorBoard) and plots of a workdir."""

from mlcv.report.plots import plot_confusion, plot_curves, plot_schedules
from mlcv.report.writers import MetricWriter, read_metrics

__all__ = ["MetricWriter", "plot_confusion", "plot_curves", "plot_schedules", "read_metrics"]

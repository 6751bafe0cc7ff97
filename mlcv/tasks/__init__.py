"""Tasks by name: what a model is built from, what it is trained to minimise and how it is evaluated.

Every task follows :class:`mlcv.tasks.base.Task`; the one training loop runs any of them.
"""

from __future__ import annotations

from mlcv.config import ConfigError
from mlcv.tasks.base import StepContext, Task
from mlcv.tasks.centernet import CenterNetTask
from mlcv.tasks.classification import ClassificationTask
from mlcv.tasks.distillation import DistillationTask
from mlcv.tasks.faster_rcnn import FasterRCNNTask
from mlcv.tasks.localization import LocalizationTask
from mlcv.tasks.mask_rcnn import MaskRCNNTask
from mlcv.tasks.mccnn import MCCNNTask
from mlcv.tasks.metric_learning import MetricLearningTask
from mlcv.tasks.rcnn import FastRCNNTask, RCNNTask
from mlcv.tasks.retinanet import RetinaNetTask
from mlcv.tasks.segmentation import SegmentationTask
from mlcv.tasks.stereo import DisparityTask, FlowTask, MonodepthTask
from mlcv.tasks.yolov3 import YOLOv3Task

_TASKS: dict[str, type[Task]] = {
    "centernet": CenterNetTask,
    "classification": ClassificationTask,
    "disparity": DisparityTask,
    "distillation": DistillationTask,
    "faster_rcnn": FasterRCNNTask,
    "flow": FlowTask,
    "fast_rcnn": FastRCNNTask,
    "localization": LocalizationTask,
    "mask_rcnn": MaskRCNNTask,
    "mccnn": MCCNNTask,
    "metric_learning": MetricLearningTask,
    "monodepth": MonodepthTask,
    "rcnn": RCNNTask,
    "retinanet": RetinaNetTask,
    "segmentation": SegmentationTask,
    "yolov3": YOLOv3Task,
}


def names() -> list[str]:
    """The registered task names."""
    return sorted(_TASKS)


def get(name: str) -> type[Task]:
    """The task class registered as ``name``."""
    if name not in _TASKS:
        raise ConfigError(f"unknown task {name!r} (config.task); valid tasks: {', '.join(names())}")
    return _TASKS[name]


def register(name: str):
    """Registers a :class:`Task` subclass under ``name`` (a decorator)."""

    def wrap(cls: type[Task]) -> type[Task]:
        if name in _TASKS:
            raise ValueError(f"task {name!r} registered twice")
        _TASKS[name] = cls
        return cls

    return wrap


__all__ = ["StepContext", "Task", "get", "names", "register"]

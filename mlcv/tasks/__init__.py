"""Tasks by name: how a model is initialised, trained and evaluated."""

from __future__ import annotations

from mlcv.config import ConfigError
from mlcv.tasks.base import TrainState
from mlcv.tasks.classification import ClassificationTask
from mlcv.tasks.distillation import DistillationTask

_TASKS = {"classification": ClassificationTask, "distillation": DistillationTask}


def names() -> list[str]:
    """The registered task names."""
    return sorted(_TASKS)


def get(name: str) -> type:
    """The task class registered as ``name``."""
    if name not in _TASKS:
        raise ConfigError(f"unknown task {name!r} (config.task); valid tasks: {', '.join(names())}")
    return _TASKS[name]


__all__ = ["TrainState", "get", "names"]

"""The contract of a method fitted in closed form (kNN, AdaBoost, forests, block matching)."""

from __future__ import annotations

import abc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ml_collections

# log(step, scalars): appends one record to metrics.jsonl (and TensorBoard).
LogFn = Callable[[int, dict[str, float]], None]


class FittedMethod(abc.ABC):
    """A method that is fitted once, then evaluated on validation and test.

    The runner calls, in order: ``__init__(config)`` (check the config and load
    data; raise :class:`~mlcv.config.ConfigError` naming the key on bad input,
    before any file is written), ``fit(log)``, ``evaluate("validation")``,
    ``evaluate("test")``, ``plot(plots_dir)`` and ``headline(summary)``.
    Model selection (a grid over k, a cascade threshold) uses only the
    training and validation splits; the test split is evaluated once, by the
    runner, after ``fit``.
    """

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config

    @abc.abstractmethod
    def fit(self, log: LogFn) -> dict[str, Any]:
        """Fits the method; returns JSON-able facts for ``summary.json`` (chosen k, stages, ...)."""

    @abc.abstractmethod
    def evaluate(self, role: str) -> dict[str, Any]:
        """Metrics on the split of ``role`` (``validation`` or ``test``): a JSON-able dict of scalars."""

    def plot(self, plots_dir: Path) -> None:  # noqa: B027 - optional hook, nothing to plot by default
        """Writes the method's figures into ``plots_dir`` (already created)."""

    def headline(self, summary: dict[str, Any]) -> str:
        """The one line the launcher prints at the end, e.g. ``test accuracy 98.1 %``."""
        test = summary["test"]
        if "accuracy" in test:
            return f"test accuracy {100 * test['accuracy']:.2f} %"
        key = sorted(test)[0]
        return f"test {key} {test[key]:.4g}"

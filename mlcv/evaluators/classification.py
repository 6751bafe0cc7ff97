"""Image-level classification metrics from a confusion matrix summed over the split."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mlcv import metrics, report
from mlcv.config import ConfigError
from mlcv.evaluators.base import SummingEvaluator
from mlcv.evaluators.registry import register


def check_num_classes(evaluator: str, num_classes: Any) -> int:
    """``num_classes`` as a positive int; a ConfigError naming the evaluator otherwise."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer) or num_classes < 1:
        raise ConfigError(f"config.evals: evaluator {evaluator!r} needs num_classes >= 1, not {num_classes!r}")
    return int(num_classes)


@register("classification")
class ClassificationEvaluator(SummingEvaluator):
    """``accuracy`` and ``mean_class_accuracy`` (mean per-class recall) of ``argmax(logits)``.

    The device builds the batch's confusion matrix with one bincount (float32 counts of unpadded
    examples); the host sums them in float64. Metrics follow :func:`mlcv.metrics.summarize_confusion`:
    a class without examples in the split is left out of ``mean_class_accuracy``.

    Extras: ``per_class_accuracy`` (NaN for a class without examples) and ``confusion_matrix``
    (rows: true class, columns: predicted; ints).
    """

    directions = {"accuracy": "max", "mean_class_accuracy": "max"}
    percent = frozenset(directions)

    def __init__(
        self,
        num_classes: int,
        label_key: str = "label",
        logits_key: str = "logits",
        class_names: Sequence[str] = (),
    ):
        self.num_classes = check_num_classes("classification", num_classes)
        self.label_key = label_key
        self.logits_key = logits_key
        self.class_names = tuple(class_names)
        self.reset()

    def zeros(self) -> dict[str, np.ndarray]:
        return {"confusion": np.zeros((self.num_classes, self.num_classes), np.float64)}

    def batch_fn(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        predictions = jnp.argmax(outputs[self.logits_key], -1)
        mask = jnp.asarray(batch["mask"], jnp.float32)
        return {"confusion": metrics.confusion_matrix(batch[self.label_key], predictions, self.num_classes, mask)}

    def result(self) -> tuple[dict[str, float], dict[str, Any]]:
        confusion = self.totals["confusion"]
        extras = {
            "per_class_accuracy": metrics.per_class_accuracy(confusion).tolist(),
            "confusion_matrix": confusion.astype(int).tolist(),
        }
        return metrics.summarize_confusion(confusion), extras

    def plot(self, extras: Mapping[str, Any], directory: Path, prefix: str) -> list[Path]:
        path = Path(directory) / f"confusion_{prefix}.png"
        report.plot_confusion(extras["confusion_matrix"], path, prefix)
        return [path]

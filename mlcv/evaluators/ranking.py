"""Average precision: a ranking metric over the whole split, which no sum over batches expresses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mlcv.config import ConfigError
from mlcv.evaluators.base import Evaluator
from mlcv.evaluators.classification import check_num_classes
from mlcv.evaluators.plots import plot_per_class, plot_precision_recall
from mlcv.evaluators.registry import register


def _ranked_counts(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True and false positives when predicting "positive" for every score >= each distinct threshold.

    Returns ``(tp, fp, thresholds)``, thresholds decreasing. Examples with equal scores enter
    together: a threshold admits all of them or none, so the order of ties never matters.
    """
    scores = np.asarray(scores, np.float64).ravel()
    positive = np.asarray(positive, bool).ravel()
    order = np.argsort(scores, kind="stable")[::-1]
    scores, positive = scores[order], positive[order]
    # The last index of each run of equal scores: where the next score differs, and the end.
    last = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1] if scores.size else np.zeros(0, int)
    tp = np.cumsum(positive, dtype=np.float64)[last]
    fp = (last + 1) - tp
    return tp, fp, scores[last]


def precision_recall_curve(
    positive: np.ndarray, scores: np.ndarray, drop_intermediate: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(precision, recall, thresholds)`` as ``sklearn.metrics.precision_recall_curve`` returns them.

    One point per distinct score, ordered by increasing threshold (decreasing recall), then the
    point (recall 0, precision 1) that closes the curve; ``thresholds`` has one entry fewer.
    ``drop_intermediate`` keeps only the first and last threshold of each run with the same recall,
    which leaves the curve (and the average precision) unchanged. Recall is NaN with no positives.
    """
    tp, fp, thresholds = _ranked_counts(positive, scores)
    if drop_intermediate and tp.size > 2:
        keep = np.r_[True, (np.diff(tp[:-1]) != 0) | (np.diff(tp[1:]) != 0), True]
        tp, fp, thresholds = tp[keep], fp[keep], thresholds[keep]
    precision = tp / (tp + fp)  # tp + fp >= 1 at every threshold
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = tp / tp[-1] if tp.size else tp
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thresholds[::-1]


def average_precision(positive: np.ndarray, scores: np.ndarray) -> float:
    """``AP = sum_n (R_n - R_{n-1}) P_n`` over the distinct score thresholds, in decreasing order.

    ``P_n`` and ``R_n`` are the precision and recall of predicting "positive" for scores >= the
    n-th threshold (``R_0 = 0``): the area under the precision-recall step function, without
    interpolation, as ``sklearn.metrics.average_precision_score`` defines it. Ties share one
    threshold. NaN when there is no positive (recall undefined), where scikit-learn returns 0.
    """
    tp, fp, _ = _ranked_counts(positive, scores)
    if not tp.size or tp[-1] == 0:
        return float("nan")
    recall_steps = np.diff(tp, prepend=0.0) / tp[-1]
    return float(np.sum(recall_steps * tp / (tp + fp)))


@register("average_precision")
class AveragePrecisionEvaluator(Evaluator):
    """``average_precision`` of a score over the whole split (see :func:`average_precision`).

    Binary (``average=None``): examples whose ``batch[label_key] == positive_class`` are the
    positives, ranked by ``outputs[score_key]`` ([B]) if given, else by
    ``softmax(outputs[logits_key])[:, positive_class]``. Extras: the precision-recall curve
    (``precision``, ``recall``, ``thresholds`` lists, as scikit-learn's ``precision_recall_curve``
    with ``drop_intermediate=True``), plotted by :meth:`plot`.

    ``average="macro"``: the mean over classes of one-vs-rest AP, each class's score its softmax
    probability (or column of ``outputs[score_key]``, [B, C]); a class without examples in the
    split has AP NaN and is left out of the mean. Extras: ``per_class_average_precision``.

    ``batch_fn`` returns per-example arrays; ``update`` keeps the unpadded rows, so memory grows
    with the split (4 bytes a score).
    """

    directions = {"average_precision": "max"}
    percent = frozenset(directions)

    def __init__(
        self,
        label_key: str = "label",
        positive_class: int = 1,
        score_key: str | None = None,
        logits_key: str = "logits",
        average: str | None = None,
        num_classes: int | None = None,
        class_names: Sequence[str] = (),
    ):
        if average not in (None, "macro"):
            raise ConfigError(
                f"config.evals: evaluator 'average_precision' has average={average!r}; valid: None, 'macro'"
            )
        self.label_key = label_key
        self.positive_class = int(positive_class)
        self.score_key = score_key
        self.logits_key = logits_key
        self.average = average
        # Only the macro average needs the class count; binary AP takes it (from the dataset) unused.
        self.num_classes = check_num_classes("average_precision", num_classes) if average else num_classes
        self.class_names = tuple(class_names)
        self.reset()

    def batch_fn(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        if self.score_key is not None:
            scores = outputs[self.score_key]
        else:
            probs = jax.nn.softmax(outputs[self.logits_key].astype(jnp.float32), axis=-1)
            scores = probs if self.average else probs[:, self.positive_class]
        labels = batch[self.label_key]
        return {
            "score": scores,
            "label": labels if self.average else labels == self.positive_class,
            "mask": batch["mask"],
        }

    def reset(self) -> None:
        self.scores: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []

    def update(self, fetched: Mapping[str, Any]) -> None:
        real = np.asarray(fetched["mask"]) > 0
        self.scores.append(np.asarray(fetched["score"])[real])
        self.labels.append(np.asarray(fetched["label"])[real])

    def result(self) -> tuple[dict[str, float], dict[str, Any]]:
        scores = np.concatenate(self.scores) if self.scores else np.zeros((0, self.num_classes or 0))
        labels = np.concatenate(self.labels) if self.labels else np.zeros(0, int)
        if self.average:
            per_class = np.array([average_precision(labels == c, scores[:, c]) for c in range(self.num_classes)])
            finite = per_class[~np.isnan(per_class)]
            ap = float(finite.mean()) if finite.size else float("nan")
            return {"average_precision": ap}, {"per_class_average_precision": per_class.tolist()}
        precision, recall, thresholds = precision_recall_curve(labels, scores.ravel(), drop_intermediate=True)
        curve = {"precision": precision.tolist(), "recall": recall.tolist(), "thresholds": thresholds.tolist()}
        return {"average_precision": average_precision(labels, scores.ravel())}, curve

    def plot(self, extras: Mapping[str, Any], directory: Path, prefix: str) -> list[Path]:
        directory = Path(directory)
        if self.average:
            path = directory / f"average_precision_{prefix}.png"
            values = extras["per_class_average_precision"]
            return [plot_per_class(values, path, "AP", f"{prefix}: one-vs-rest AP", self.class_names)]
        path = directory / f"precision_recall_{prefix}.png"
        return [
            plot_precision_recall(extras["precision"], extras["recall"], path, f"{prefix}: class {self.positive_class}")
        ]

"""The attentional cascade: boosted stages that reject most windows early, trained with mined negatives, and its scan.

Stage ``k`` is an AdaBoost sum of ``stage_sizes[k]`` stumps whose threshold is
lowered (or raised) on validation faces until it keeps ``stage_recall`` of the
faces that reached it. Stage ``k + 1`` trains on the same faces and on
negatives drawn from the windows that the cascade so far still calls faces
(its false positives), so every stage learns what the previous ones let
through. A window is a face only if every stage accepts it; most windows of
an image are rejected by the first stage, a handful of features.

Scanning an image scales the detector, not the image: at scale ``s`` the
features' rectangles are scaled (see :func:`mlcv.classic.algorithms.haar.corners`) and the
window's standard deviation comes from the integral images of ``x`` and
``x**2``, four look-ups each.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from mlcv.classic.algorithms import adaboost, haar
from mlcv.classic.base import LogFn
from mlcv.ops import boxes as box_ops
from mlcv.ops.integral import integral_image, window_mean_std


@dataclasses.dataclass
class Stage:
    """One boosted stage: its own features (column ``t`` is stump ``t``), stumps and acceptance threshold."""

    features: haar.HaarFeatures
    stumps: adaboost.Stumps
    threshold: float


@dataclasses.dataclass
class Cascade:
    """A cascade of stages over ``window`` x ``window`` windows normalised by their std (floored at ``min_std``)."""

    window: int
    min_std: float
    stages: list[Stage] = dataclasses.field(default_factory=list)

    @property
    def num_features(self) -> int:
        """Stumps over all stages (a feature chosen twice counts twice)."""
        return sum(len(s.stumps) for s in self.stages)

    def classify_windows(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(accepted (N,), stages_passed (N,))`` for base-size windows ``(N, window, window)`` in [0, 1]."""
        ii, std = haar.window_stats(windows, min_std=self.min_std)
        passed = np.zeros(len(windows), np.int64)
        alive = np.ones(len(windows), bool)
        for stage in self.stages:
            score = stage.stumps.score(haar.feature_values(stage.features, ii, std).T)
            alive &= score >= stage.threshold
            passed += alive
        return alive, passed

    def scan(
        self, ii: np.ndarray, ii2: np.ndarray, scale: float, step: int
    ) -> tuple[np.ndarray, np.ndarray, int, np.ndarray, int]:
        """Runs the cascade scaled by ``scale`` over every window on a ``step`` grid of one image.

        Args:
          ii, ii2: padded integral images of the image and of its square.

        Returns:
          ``(x0, y0, size, score, n_windows)``: the corners and side of the
          accepted windows, their last stage's score minus its threshold, and how
          many windows were tried.
        """
        size = int(round(self.window * scale))
        h, w = ii.shape[0] - 1, ii.shape[1] - 1
        if size > min(h, w):
            return np.zeros(0, np.int64), np.zeros(0, np.int64), size, np.zeros(0), 0
        y0, x0 = (a.ravel() for a in np.meshgrid(np.arange(0, h - size + 1, step), np.arange(0, w - size + 1, step)))
        x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
        _, std = window_mean_std(ii, ii2, x0, y0, x0 + size, y0 + size, min_std=self.min_std)
        n = len(x0)
        margin = np.zeros(n)
        for stage in self.stages:
            # bounded temporaries: (rows, features, 16) look-ups per chunk
            rows = max(256, 2_000_000 // (16 * len(stage.stumps)))
            score = (
                np.concatenate(
                    [
                        stage.stumps.score(
                            haar.values_at(
                                stage.features, ii, x0[s : s + rows], y0[s : s + rows], scale, std[s : s + rows]
                            )
                        )
                        for s in range(0, len(x0), rows)
                    ]
                )
                if len(x0)
                else np.zeros(0)
            )
            keep = score >= stage.threshold
            x0, y0, std, margin = x0[keep], y0[keep], std[keep], score[keep] - stage.threshold
        return x0, y0, size, margin, n


def detect(
    cascade: Cascade,
    image: np.ndarray,
    *,
    scale_factor: float = 1.25,
    step: float = 1.5,
    min_size: int = 0,
    max_size: int = 0,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Multi-scale sliding-window detection on a grey image: raw boxes ``(n, 4)``, their margins, windows tried.

    Scales grow from ``max(1, min_size / window)`` by ``scale_factor`` while the
    window fits (and is at most ``max_size`` when > 0); the grid step at scale
    ``s`` is ``max(1, round(step * s))`` pixels.
    """
    image = np.asarray(image, np.float64)
    ii, ii2 = integral_image(image, pad=True), integral_image(image**2, pad=True)
    scale = max(1.0, min_size / cascade.window)
    found, margins, tried = [], [], 0
    while round(cascade.window * scale) <= min(image.shape) and (max_size <= 0 or cascade.window * scale <= max_size):
        x0, y0, size, margin, n = cascade.scan(ii, ii2, scale, max(1, int(round(step * scale))))
        found.append(np.stack([x0, y0, x0 + size, y0 + size], axis=1).astype(np.float64))
        margins.append(margin)
        tried += n
        scale *= scale_factor
    if not found:
        return np.zeros((0, 4)), np.zeros(0), 0
    return np.concatenate(found), np.concatenate(margins), tried


def group(boxes: np.ndarray, scores: np.ndarray, *, min_neighbors: int, iou_threshold: float) -> np.ndarray:
    """Indices of the detections kept: at least ``min_neighbors`` overlapping raw detections, then NMS."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    idx = np.arange(len(boxes))
    if min_neighbors > 0:
        idx = idx[box_ops.count_overlaps(boxes, iou_threshold) >= min_neighbors]
    return idx[box_ops.nms(boxes[idx], scores[idx], iou_threshold)]


def _stage_threshold(scores: np.ndarray, recall: float, scale: float) -> float:
    """The highest threshold that keeps ``recall`` of ``scores``, a hair lower for float noise between code paths."""
    if len(scores) == 0:
        return 0.0
    k = max(1, math.ceil(recall * len(scores) - 1e-9))
    return float(np.sort(scores)[::-1][k - 1] - 1e-9 * scale)


def train(
    features: haar.HaarFeatures,
    positives: np.ndarray,
    val_positives: np.ndarray,
    mine: Callable[[Cascade, int, np.random.Generator], tuple[np.ndarray, float]],
    *,
    stage_sizes: tuple[int, ...],
    stage_recall: float,
    stage_false_positive_rate: float,
    balanced_weights: bool,
    negatives_per_stage: int,
    per_round: int,
    min_std: float,
    rng: np.random.Generator,
    log: LogFn,
) -> tuple[Cascade, list[dict[str, float]]]:
    """Trains a cascade; ``mine(cascade, n, rng)`` returns up to ``n`` negatives the cascade accepts and their rate.

    Stage ``k`` adds stumps one round at a time, re-tuning its threshold on the
    validation faces after each, until it accepts at most
    ``stage_false_positive_rate`` of its training negatives or has
    ``stage_sizes[k]`` stumps (Viola and Jones' per-stage targets ``f`` and
    ``d``; a rate of 0 gives every stage exactly its size). Logs every round
    (global step) and, at each stage's last round, the stage's statistics;
    stops early when no false positive is left to mine. ``balanced_weights``
    starts each stage's boosting from Viola and Jones' ``1 / 2m`` per face and
    ``1 / 2l`` per non-face instead of the course's ``1 / N``.
    """
    cascade = Cascade(features.window, min_std)
    stats: list[dict[str, float]] = []
    step = 0
    val_alive = np.ones(len(val_positives), bool)
    for k, size in enumerate(stage_sizes):
        negatives, pool_rate = mine(cascade, negatives_per_stage, rng)
        if len(negatives) == 0:
            break
        x = np.concatenate([positives, negatives])
        y = np.r_[np.ones(len(positives), np.int64), np.zeros(len(negatives), np.int64)]
        ii, std = haar.window_stats(x, min_std=min_std)
        values = haar.feature_values(features, ii, std)
        sf = adaboost.sort_features(values)
        column = values.__getitem__  # feature f -> its values on the training windows
        val_ii, val_std = haar.window_stats(val_positives[val_alive], min_std=min_std)
        val_values = haar.feature_values(features, val_ii, val_std)
        weights = np.where(y == 1, 0.5 / len(positives), 0.5 / len(negatives)) if balanced_weights else None
        stumps, errors = None, []
        for _ in range(size):
            stumps, weights, err, perfect = adaboost.boost(
                sf,
                column,
                y,
                1,
                stumps=stumps,
                weights=weights,
                per_round=per_round,
                rng=rng,
                log=log,
                log_step=step + len(errors),
            )
            errors += err
            val_scores = stumps.score(val_values[stumps.feature].T)
            threshold = _stage_threshold(val_scores, stage_recall, float(np.abs(stumps.alpha).sum()))
            accepted = stumps.score(values[stumps.feature].T) >= threshold
            if perfect or accepted[y == 0].mean() <= stage_false_positive_rate:
                break
        step += len(errors)
        chosen = stumps.feature
        stage = Stage(
            features.subset(chosen),
            adaboost.Stumps(np.arange(len(chosen)), stumps.threshold, stumps.polarity, stumps.alpha),
            threshold,
        )
        cascade.stages.append(stage)
        val_alive[np.flatnonzero(val_alive)[val_scores < threshold]] = False
        del sf, values, val_values, column
        record = {
            "stage": float(k),
            "stage/features": float(len(chosen)),
            "stage/threshold": threshold,
            "stage/negatives": float(len(negatives)),
            "stage/pool_false_positive_rate_before": pool_rate,
            "stage/train_recall": float(accepted[y == 1].mean()),
            "stage/train_false_positive_rate": float(accepted[y == 0].mean()),
            "stage/validation_recall": float(val_alive.mean()),
            "stage/final_train_error": errors[-1],
        }
        log(step - 1, record)
        stats.append(record)
    return cascade, stats

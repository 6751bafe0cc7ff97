"""Verification of pairs over a whole split: accuracy at a threshold fitted on validation, ROC, AUC, TAR@FAR."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import matplotlib.pyplot as plt
import numpy as np

from mlcv import report  # noqa: F401  (selects matplotlib's Agg backend before the first figure)
from mlcv.config import ConfigError
from mlcv.evaluators.base import Evaluator
from mlcv.evaluators.registry import register
from mlcv.metrics import verification as vf

OPTIMISTIC = "this split (optimistic)"
#: The false accept rates at which the true accept rate is reported, with the scalars' names.
FARS = {"tar_at_far_1e-2": 1e-2, "tar_at_far_1e-3": 1e-3}


@register("verification")
class VerificationEvaluator(Evaluator):
    """Balanced pairs of the split (:func:`mlcv.metrics.verification.make_pairs`, ``pairs_seed``, at most
    ``max_pairs``), accepted as "same identity" when their distance is <= a threshold.

    ``distance``: ``"euclidean"``, ``"cosine"`` (``1 - cos``) or ``"deepface"``: ``sum_k alpha_k |f1_k - f2_k|``
    on features divided component-wise by their largest absolute value over the training split, then
    L2-normalised (DeepFace; the course's eq. 64 with weights).

    Fitting (:meth:`fit`, called by the loop before the final test pass; :attr:`fit_roles`):
    ``"validation"``: the threshold of best accuracy on the validation pairs, used on every later pass.
    ``"train"`` (``"deepface"`` only, fitted first): the normalisation constants and the weights alpha
    (:func:`mlcv.metrics.verification.fit_deepface_alpha`: logistic regression on the training pairs'
    ``|f1 - f2|``, ``deepface_c`` its inverse L2 strength); it drops a threshold fitted before, which belonged
    to the old distance. Unfitted, deepface uses alpha = 1 and this split's own constants, and the extras say so.

    Scalars: ``verification_accuracy`` (at the fitted threshold; unfitted, at this split's best one, which is
    optimistic), ``roc_auc``, ``tar_at_far_1e-2`` and ``tar_at_far_1e-3`` (the true accept rate at the largest
    threshold whose false accept rate is at most 1e-2 / 1e-3; 0.001 needs over 1,000 negative pairs to mean
    anything), and ``threshold`` (a distance; its "min" direction is nominal, no model is chosen on it).

    Extras: ``roc_far``, ``roc_tar``, ``roc_thresholds`` (the ROC curve, at most ``roc_points`` points; the first
    point accepts nothing, its threshold written as -1), ``threshold_from`` (the role it was fitted on, or
    ``"this split (optimistic)"``), ``threshold_far`` and ``threshold_tar`` (the operating point),
    ``verification_pairs`` (positive and negative counts), and for deepface ``deepface_fit`` and
    ``deepface_alpha``.
    """

    directions = {
        "verification_accuracy": "max",
        "roc_auc": "max",
        **dict.fromkeys(FARS, "max"),
        "threshold": "min",
    }
    percent = frozenset(directions) - {"threshold"}

    def __init__(
        self,
        embedding_key: str = "embedding",
        label_key: str = "label",
        distance: str = "euclidean",
        pairs_seed: int = 0,
        max_pairs: int | None = 20000,
        roc_points: int = 500,
        deepface_c: float = 1.0,
    ):
        if distance not in vf.DISTANCES:
            raise ConfigError(
                f"config.evals: evaluator 'verification' has distance={distance!r}; valid: {', '.join(vf.DISTANCES)}"
            )
        if max_pairs is not None and (isinstance(max_pairs, bool) or int(max_pairs) < 2):
            raise ConfigError(f"config.evals: evaluator 'verification' needs max_pairs >= 2 or None, not {max_pairs!r}")
        self.embedding_key = embedding_key
        self.label_key = label_key
        self.distance = distance
        self.pairs_seed = int(pairs_seed)
        self.max_pairs = None if max_pairs is None else int(max_pairs)
        self.roc_points = max(2, int(roc_points))
        self.deepface_c = float(deepface_c)
        self.fit_roles = ("train", "validation") if distance == "deepface" else ("validation",)
        self.threshold: float | None = None
        self.threshold_from: str | None = None
        self.scale: np.ndarray | None = None
        self.alpha: np.ndarray | None = None
        self.deepface_fit = "none: alpha = 1, normalisation constants from this split"
        self.reset()

    def batch_fn(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        return {"embedding": outputs[self.embedding_key], "label": batch[self.label_key], "mask": batch["mask"]}

    def reset(self) -> None:
        self.embeddings: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []

    def update(self, fetched: Mapping[str, Any]) -> None:
        real = np.asarray(fetched["mask"]) > 0
        self.embeddings.append(np.asarray(fetched["embedding"], np.float32)[real])
        self.labels.append(np.asarray(fetched["label"]).reshape(len(real), -1)[real, 0])

    def _gathered(self) -> tuple[np.ndarray, np.ndarray]:
        emb = np.concatenate(self.embeddings) if self.embeddings else np.zeros((0, 1), np.float32)
        return emb, np.concatenate(self.labels) if self.labels else np.zeros(0, int)

    def _features(self, emb: np.ndarray) -> np.ndarray:
        """What the distance reads: deepface's normalised features, else the embeddings."""
        if self.distance != "deepface":
            return emb
        return vf.deepface_normalise(emb, vf.deepface_scale(emb) if self.scale is None else self.scale)

    def _pairs(self, emb: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The distances and same-identity flags of the split's pairs."""
        pairs, same = vf.make_pairs(labels, self.pairs_seed, self.max_pairs)
        return vf.pair_distances(self._features(emb), pairs, self.distance, self.alpha), same

    def fit(self, role: str) -> None:
        """``"train"``: deepface's normalisation and weights; ``"validation"``: the threshold of best accuracy."""
        if role not in self.fit_roles:
            raise ValueError(f"verification ({self.distance}) fits on {self.fit_roles}, not on {role!r}")
        emb, labels = self._gathered()
        if role == "train" and not len(labels):
            self.scale = self.alpha = self.threshold = self.threshold_from = None
            self.deepface_fit = f"none (the {role} pass was empty): alpha = 1, normalisation constants from this split"
            return
        if role == "train":
            self.scale = vf.deepface_scale(emb)
            features = vf.deepface_normalise(emb, self.scale)
            pairs, same = vf.make_pairs(labels, self.pairs_seed, self.max_pairs)
            alpha = vf.fit_deepface_alpha(features, pairs, same, self.deepface_c)
            self.alpha = alpha if alpha.any() else None
            self.deepface_fit = role if alpha.any() else f"{role} (no component separated the pairs: alpha = 1)"
            self.threshold = self.threshold_from = None
            return
        threshold, _ = vf.best_threshold(*self._pairs(emb, labels))
        if np.isfinite(threshold):  # a split without pairs fits nothing
            self.threshold, self.threshold_from = threshold, role

    def result(self) -> tuple[dict[str, float], dict[str, Any]]:
        distances, same = self._pairs(*self._gathered())
        if self.threshold is None:
            threshold, accuracy = vf.best_threshold(distances, same)
        else:
            threshold, accuracy = self.threshold, vf.accuracy_at(distances, same, self.threshold)
        scalars = {
            "verification_accuracy": accuracy,
            "roc_auc": vf.roc_auc(distances, same),
            **{name: vf.tar_at_far(distances, same, far) for name, far in FARS.items()},
            "threshold": float(threshold),
        }
        far, tar, thresholds = vf.roc_curve(distances, same, drop_intermediate=True)
        if len(far) > self.roc_points:
            keep = np.unique(np.round(np.linspace(0, len(far) - 1, self.roc_points)).astype(int))
            far, tar, thresholds = far[keep], tar[keep], thresholds[keep]
        accepted = distances <= threshold
        # Balanced pairs: both kinds or none.
        operating = [float(np.mean(accepted[~same])), float(np.mean(accepted[same]))] if len(same) else [np.nan] * 2
        extras: dict[str, Any] = {
            "roc_far": far.tolist(),
            "roc_tar": tar.tolist(),
            # The "accept nothing" point: -1 accepts no distance as -inf does, and keeps the summary finite JSON.
            "roc_thresholds": np.where(np.isneginf(thresholds), -1.0, thresholds).tolist(),
            "threshold_from": self.threshold_from if self.threshold is not None else OPTIMISTIC,
            "threshold_far": operating[0],
            "threshold_tar": operating[1],
            "verification_pairs": {"positive": int(same.sum()), "negative": int((~same).sum())},
        }
        if self.distance == "deepface":
            extras["deepface_fit"] = self.deepface_fit
            extras["deepface_alpha"] = None if self.alpha is None else self.alpha.tolist()
        return scalars, extras

    def plot(self, extras: Mapping[str, Any], directory: Path, prefix: str) -> list[Path]:
        path = Path(directory) / f"roc_{prefix}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig, ax = plt.subplots(figsize=(5, 4.5))
        ax.plot(extras["roc_far"], extras["roc_tar"], label=f"{self.distance} distance")
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="chance")
        if extras.get("threshold_far") is not None and np.isfinite(extras["threshold_far"]):
            ax.plot(
                extras["threshold_far"],
                extras["threshold_tar"],
                "o",
                color="k",
                label=f"threshold from {extras['threshold_from']}",
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("false accept rate")
        ax.set_ylabel("true accept rate")
        ax.set_title(f"{prefix}: verification ROC")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return [path]

"""Semantic segmentation metrics from a per-pixel confusion matrix summed over the split."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from mlcv import metrics, report
from mlcv.config import ConfigError
from mlcv.evaluators.base import SummingEvaluator
from mlcv.evaluators.classification import check_num_classes
from mlcv.evaluators.plots import _save, image_png, label_png, plot_per_class, png_image, png_labels
from mlcv.evaluators.registry import register


def _nanmean(x: np.ndarray) -> float:
    """Mean of the non-NaN values; NaN (without numpy's warning) when there are none."""
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else float("nan")


def segmentation_scores(confusion: np.ndarray, exclude_from_mean: Sequence[int] = ()) -> dict[str, float]:
    """``miou``, ``pixel_accuracy``, ``mean_accuracy`` and ``fw_iou`` of a pixel confusion matrix.

    With ``n_ij`` the pixels of class i predicted as j, ``t_i = sum_j n_ij`` and ``IoU_i =
    n_ii / (t_i + sum_j n_ji - n_ii)``:

    - ``pixel_accuracy = sum_i n_ii / sum_i t_i`` over every class;
    - ``mean_accuracy``: the mean over classes of ``n_ii / t_i``;
    - ``miou``: the mean over classes of ``IoU_i``;
    - ``fw_iou = sum_i t_i IoU_i / sum_i t_i``.

    The means run over the classes not in ``exclude_from_mean`` whose value is defined: a class
    absent from both the ground truth and the predictions has IoU NaN and is left out; one absent
    from the ground truth but predicted has IoU 0 and counts; ``n_ii / t_i`` is NaN, and left out,
    for every class absent from the ground truth.
    """
    confusion = np.asarray(confusion, np.float64)
    keep = np.ones(len(confusion), bool)
    keep[list(exclude_from_mean)] = False
    iou = metrics.per_class_iou(confusion)[keep]
    support = confusion.sum(1)[keep]
    # IoU is NaN only where the support is 0 too, so those classes weigh nothing in fw_iou.
    weighted = np.where(support > 0, support * np.nan_to_num(iou), 0.0).sum()
    return {
        "miou": _nanmean(iou),
        "pixel_accuracy": metrics.accuracy(confusion),
        "mean_accuracy": _nanmean(metrics.per_class_accuracy(confusion)[keep]),
        "fw_iou": float(weighted / support.sum()) if support.sum() else float("nan"),
    }


@register("segmentation")
class SegmentationEvaluator(SummingEvaluator):
    """Per-pixel ``miou``, ``pixel_accuracy``, ``mean_accuracy`` (mean class recall) and ``fw_iou``.

    ``outputs[logits_key]`` is ``[B, H, W, C]``; ``batch[label_key]`` is ``[B, H, W]`` (or
    ``[B, H, W, 1]``) of class ids. The device counts pixel (label, argmax) pairs with one bincount
    into int32 counts (exact, where float32 would stop counting at 2**24 pixels per cell), leaving
    out padded examples (``batch["mask"] == 0``, broadcast over their pixels) and pixels labelled
    ``ignore_label``; the host sums the matrices in float64.

    Conventions (see :func:`segmentation_scores`): over the whole split, a class absent from both
    the ground truth and the predictions has IoU NaN and is left out of the means (``np.nanmean``);
    a class absent from the ground truth but predicted has IoU 0. Classes in ``exclude_from_mean``
    (e.g. background 0) are left out of ``miou``, ``mean_accuracy`` and ``fw_iou`` but kept in
    ``pixel_accuracy`` and in the extras: ``per_class_iou``, ``per_class_accuracy`` (NaN where
    undefined) and ``confusion_matrix`` (ints).

    Figures: per-class IoU bars, the confusion matrix (rows in % of each true class's pixels) and, when the batch
    holds ``image``, the first ``draw_images`` images of the split with their ground truth and the predictions
    overlaid side by side (kept in the extras as ``segmentation_examples``: PNG strings, a few kB an image; the
    ground truth's ``ignore_label`` pixels are left uncoloured).

    ``boundary_width`` w > 0 adds ``boundary_miou`` and ``boundary_pixel_accuracy``: the same scores over the band
    of pixels within w px (Chebyshev distance) of a ground-truth boundary, i.e. the labelled pixels whose
    (2w+1) x (2w+1) window, cut at the image border, holds another labelled class (ignored pixels make no boundary).
    It is the "trimap" evaluation of the DeepLab papers, which measures how sharp the predicted boundaries are
    where the mIoU over the whole image barely notices them; the band's confusion matrix is in the extras as
    ``boundary_confusion_matrix``.
    """

    directions = {"miou": "max", "pixel_accuracy": "max", "mean_accuracy": "max", "fw_iou": "max"}
    percent = frozenset(directions)

    def __init__(
        self,
        num_classes: int,
        label_key: str = "segmentation",
        logits_key: str = "logits",
        ignore_label: int | None = 255,
        exclude_from_mean: Sequence[int] = (),
        class_names: Sequence[str] = (),
        draw_images: int = 4,
        boundary_width: int = 0,
    ):
        self.num_classes = check_num_classes("segmentation", num_classes)
        self.label_key = label_key
        self.logits_key = logits_key
        self.ignore_label = ignore_label
        self.exclude_from_mean = tuple(int(c) for c in exclude_from_mean)
        bad = [c for c in self.exclude_from_mean if not 0 <= c < self.num_classes]
        if bad:
            raise ConfigError(
                f"config.evals: evaluator 'segmentation' has exclude_from_mean={bad} outside 0..{self.num_classes - 1}"
            )
        self.class_names = tuple(class_names)
        # The figure stores label maps as 8-bit PNGs, 255 for ignored pixels: at most 255 classes are drawn.
        self.draw_images = int(draw_images) if self.num_classes <= 255 else 0
        self.boundary_width = int(boundary_width)
        if self.boundary_width < 0:
            raise ConfigError(f"config.evals: evaluator 'segmentation' has boundary_width={boundary_width} < 0")
        if self.boundary_width:
            self.directions = {**type(self).directions, "boundary_miou": "max", "boundary_pixel_accuracy": "max"}
            self.percent = frozenset(self.directions)
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.examples: list[dict[str, str]] = []

    def update(self, fetched: Mapping[str, Any]) -> None:
        super().update(fetched)
        if "draw_image" not in fetched:
            return
        for image, labels, predictions, real in zip(
            fetched["draw_image"],
            fetched["draw_labels"],
            fetched["draw_predictions"],
            fetched["draw_mask"],
            strict=True,
        ):
            if real and len(self.examples) < self.draw_images:
                ignored = labels == self.ignore_label if self.ignore_label is not None else np.zeros(labels.shape, bool)
                ground_truth = np.where(ignored | (labels < 0) | (labels >= self.num_classes), 255, labels)
                self.examples.append(
                    {
                        "image_png": image_png(image),
                        "labels_png": label_png(ground_truth),
                        "predictions_png": label_png(predictions),
                    }
                )

    def zeros(self) -> dict[str, np.ndarray]:
        keys = ("confusion", "boundary_confusion") if self.boundary_width else ("confusion",)
        return {key: np.zeros((self.num_classes, self.num_classes), np.float64) for key in keys}

    def _band(self, labels: jax.Array, valid: jax.Array) -> jax.Array:
        """The valid pixels with another valid class within ``boundary_width`` px: max != min over the window."""
        w = self.boundary_width
        window, pad = (1, 2 * w + 1, 2 * w + 1), ((0, 0), (w, w), (w, w))
        big = jnp.iinfo(jnp.int32).max
        # Invalid pixels and the border take the neutral value of each reduction, so they make no boundary.
        hi = jax.lax.reduce_window(jnp.where(valid, labels, -1), -1, jax.lax.max, window, (1, 1, 1), pad)
        lo = jax.lax.reduce_window(jnp.where(valid, labels, big), big, jax.lax.min, window, (1, 1, 1), pad)
        return valid & (hi != lo)

    def batch_fn(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        logits = outputs[self.logits_key]
        labels = batch[self.label_key]
        if labels.ndim == logits.ndim and labels.shape[-1] == 1:
            labels = labels[..., 0]
        if labels.shape != logits.shape[:-1]:
            raise ValueError(
                f"segmentation evaluator: labels {batch[self.label_key].shape} do not match logits {logits.shape} "
                "(the task must bring its logits to the label resolution)"
            )
        labels = labels.astype(jnp.int32)  # uint8 label maps would overflow label * C in the bincount
        mask = batch["mask"].reshape(labels.shape[:1] + (1,) * (labels.ndim - 1)) > 0
        weights = jnp.broadcast_to(mask, labels.shape)
        if self.ignore_label is not None:
            weights = weights & (labels != self.ignore_label)
        predictions = jnp.argmax(logits, -1)
        confusion = metrics.confusion_matrix(labels, predictions, self.num_classes, weights.astype(jnp.int32))
        out = {"confusion": confusion}
        if self.boundary_width:
            valid = (labels >= 0) & (labels < self.num_classes)
            if self.ignore_label is not None:
                valid = valid & (labels != self.ignore_label)
            band = self._band(labels, valid) & weights
            out["boundary_confusion"] = metrics.confusion_matrix(
                labels, predictions, self.num_classes, band.astype(jnp.int32)
            )
        if self.draw_images > 0 and "image" in batch:
            # The first rows suffice: padded rows come last, so the split's first images lead the first batches.
            n = self.draw_images
            out |= {
                "draw_image": batch["image"][:n],
                "draw_labels": labels[:n],
                "draw_predictions": predictions[:n],
                "draw_mask": batch["mask"][:n] > 0,
            }
        return out

    def result(self) -> tuple[dict[str, float], dict[str, Any]]:
        confusion = self.totals["confusion"]
        extras = {
            "per_class_iou": metrics.per_class_iou(confusion).tolist(),
            "per_class_accuracy": metrics.per_class_accuracy(confusion).tolist(),
            "confusion_matrix": confusion.astype(np.int64).tolist(),
            "segmentation_examples": list(self.examples),
        }
        scalars = segmentation_scores(confusion, self.exclude_from_mean)
        if self.boundary_width:
            band = self.totals["boundary_confusion"]
            extras["boundary_confusion_matrix"] = band.astype(np.int64).tolist()
            in_band = segmentation_scores(band, self.exclude_from_mean)
            scalars |= {"boundary_miou": in_band["miou"], "boundary_pixel_accuracy": in_band["pixel_accuracy"]}
        return scalars, extras

    def plot(self, extras: Mapping[str, Any], directory: Path, prefix: str) -> list[Path]:
        directory = Path(directory)
        iou = plot_per_class(
            extras["per_class_iou"],
            directory / f"iou_{prefix}.png",
            "IoU",
            f"{prefix}: per-class IoU",
            self.class_names,
        )
        # Rows as percentages of each true class: raw pixel counts run to millions per cell.
        confusion = np.asarray(extras["confusion_matrix"], np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            rows = np.nan_to_num(100 * confusion / confusion.sum(1, keepdims=True))
        path = directory / f"confusion_{prefix}.png"
        report.plot_confusion(np.round(rows), path, f"{prefix}: % of each true class's pixels")
        paths = [iou, path]
        if extras.get("segmentation_examples"):
            paths.append(self._plot_examples(extras["segmentation_examples"], directory / f"examples_{prefix}.png"))
        return paths

    def _plot_examples(self, examples: Sequence[Mapping[str, str]], path: Path) -> Path:
        """Rows of (image, ground truth over it, predictions over it), one colour a class, half transparent."""
        k = self.num_classes
        # A qualitative palette of k colours (tab20 repeats past 20 classes; the legend names them).
        palette = plt.get_cmap("tab20" if k > 10 else "tab10")(np.arange(k) % (20 if k > 10 else 10))
        names = self.class_names if len(self.class_names) == k else [str(c) for c in range(k)]
        fig, axes = plt.subplots(len(examples), 3, figsize=(10, 3.4 * len(examples) + 0.6), squeeze=False)
        shown: set[int] = set()
        for row, ex in zip(axes, examples, strict=True):
            image = png_image(ex["image_png"])[..., :3]
            for ax, key, title in zip(
                row, (None, "labels_png", "predictions_png"), ("image", "ground truth", "predicted"), strict=True
            ):
                ax.imshow(image, interpolation="nearest")
                if key is not None:
                    labels = png_labels(ex[key])
                    valid = labels < k  # 255: ignored, left uncoloured
                    colours = np.zeros((*labels.shape, 4))
                    colours[valid] = palette[labels[valid]]
                    colours[..., 3] = np.where(valid, 0.55, 0.0)
                    ax.imshow(colours, interpolation="nearest")
                    shown |= set(np.unique(labels[valid]).tolist())
                ax.set_title(title, fontsize=9)
                ax.set_axis_off()
        handles = [plt.Rectangle((0, 0), 1, 1, color=palette[c]) for c in sorted(shown)]
        fig.legend(
            handles, [names[c] for c in sorted(shown)], loc="lower center", ncol=min(len(handles), 12), fontsize=7
        )
        fig.tight_layout(rect=(0, 0.6 / (3.4 * len(examples) + 0.6), 1, 1))
        return _save(fig, path)

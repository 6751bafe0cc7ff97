"""COCO's box detection metrics over a split: AP@[.5:.95], AP50, AP75, AP and AR by object size, AR at 1/10/100."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from mlcv.config import ConfigError
from mlcv.evaluators.base import Evaluator
from mlcv.evaluators.classification import check_num_classes
from mlcv.evaluators.plots import _save
from mlcv.evaluators.registry import register
from mlcv.metrics import detection

#: What the task's predictions hold per example (see :mod:`mlcv.tasks.detection`).
OUTPUT_KEYS = ("det_boxes", "det_scores", "det_classes", "det_mask")
#: What the batch holds per example; ``box_crowd`` and ``box_area`` are optional.
BATCH_KEYS = ("boxes", "box_labels", "box_mask")


def _png(image: np.ndarray) -> str:
    """An image scaled min-max to 0..255 for display, as a base64 PNG string: a few kB in the run's JSON."""
    x = np.asarray(image, np.float64)
    x = x[..., 0] if x.ndim == 3 and x.shape[-1] == 1 else x[..., :3]
    lo, hi = np.nanmin(x), np.nanmax(x)
    x = np.round(255 * (x - lo) / (hi - lo if hi > lo else 1.0)).astype(np.uint8)
    buf = io.BytesIO()
    plt.imsave(buf, x, format="png", cmap="gray", vmin=0, vmax=255)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _unpng(text: str) -> np.ndarray:
    return plt.imread(io.BytesIO(base64.b64decode(text)), format="png")


@register("detection")
class DetectionEvaluator(Evaluator):
    """COCO's twelve box metrics (:func:`mlcv.metrics.detection.coco_evaluate`, equal to pycocotools' ``COCOeval``).

    Reads, per example: from the task's outputs ``det_boxes`` ``[B, K, 4]`` (``(y0, x0, y1, x1)`` in input-image
    pixels), ``det_scores`` ``[B, K]``, ``det_classes`` ``[B, K]`` and ``det_mask`` ``[B, K]`` (1: a detection, 0:
    padding); from the batch ``boxes`` ``[B, N, 4]``, ``box_labels`` ``[B, N]``, ``box_mask`` ``[B, N]``,
    optionally ``box_crowd`` ``[B, N]`` (1: a crowd region, ignored as COCO does) and ``box_area`` ``[B, N]`` (the
    area that decides the size range; the box area without it), ``mask`` ``[B]`` and, for the figure, ``image``.

    ``batch_fn`` passes those arrays through (the first ``draw_images`` images only); ``update`` keeps the real
    boxes of the real examples on the host, so memory grows with the split (about 2 kB an example for 100
    detections); ``result`` evaluates once. Scalars (fractions, NaN where the split leaves them undefined, e.g.
    ``ap_large`` without large objects): ``ap ap50 ap75 ap_small ap_medium ap_large ar1 ar10 ar100 ar_small
    ar_medium ar_large``; ``ar1``/``ar10``/``ar100`` name the entries of ``max_detections`` in increasing order.

    Extras: ``per_class_ap`` (AP@[.5:.95] per class, NaN for a class without ground truth); ``pr_curves``
    (per class, precision at COCO's 101 recall points at IoU 0.5); ``precision_recall_by_score`` (precision and
    recall of the detections scoring >= each of 101 thresholds, IoU 0.5, classes pooled); ``detection_examples``
    (the first ``draw_images`` images of the split, their ground truth and detections scoring >=
    ``score_threshold_for_drawing``), which :meth:`plot` draws.
    """

    directions = {name: "max" for name in detection.STAT_NAMES}
    percent = frozenset(directions)

    def __init__(
        self,
        num_classes: int,
        class_names: Sequence[str] = (),
        iou_thresholds: Sequence[float] | None = None,
        area_ranges: Mapping[str, Sequence[float]] | None = None,
        max_detections: Sequence[int] = detection.MAX_DETECTIONS,
        draw_images: int = 4,
        score_threshold_for_drawing: float = 0.3,
    ):
        self.num_classes = check_num_classes("detection", num_classes)
        self.class_names = tuple(class_names)
        self.iou_thresholds = detection.IOU_THRESHOLDS if iou_thresholds is None else np.asarray(iou_thresholds, float)
        ranges = detection.AREA_RANGES if area_ranges is None else dict(area_ranges)
        if "all" not in ranges or any(len(r) != 2 or r[0] > r[1] for r in ranges.values()):
            raise ConfigError(
                f"config.evals: evaluator 'detection' needs area_ranges as name -> [low, high] (pixels^2) with 'all', "
                f"got {ranges}"
            )
        self.area_ranges = {k: (float(lo), float(hi)) for k, (lo, hi) in ranges.items()}
        self.max_detections = tuple(sorted(int(m) for m in max_detections))
        if not self.max_detections or self.max_detections[0] < 1 or len(self.iou_thresholds) < 1:
            raise ConfigError(
                "config.evals: evaluator 'detection' needs max_detections >= 1 and iou_thresholds, "
                f"got {max_detections}, {iou_thresholds}"
            )
        self.draw_images = int(draw_images)
        self.score_threshold_for_drawing = float(score_threshold_for_drawing)
        self.reset()

    def batch_fn(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        out = {k: outputs[k] for k in OUTPUT_KEYS} | {k: batch[k] for k in (*BATCH_KEYS, "mask")}
        out["box_crowd"] = batch["box_crowd"] if "box_crowd" in batch else jnp.zeros_like(batch["box_mask"])
        if "box_area" in batch:
            out["box_area"] = batch["box_area"]
        if "box_overflow" in batch:  # boxes beyond pad_boxes(n): neither scored nor seen
            out["box_overflow"] = jnp.sum(batch["box_overflow"] * (batch["mask"] > 0))
        if self.draw_images > 0 and "image" in batch:
            # The first rows suffice: padded rows come last, so the split's first images lead the first batches.
            out["image"] = batch["image"][: self.draw_images]
        return out

    def reset(self) -> None:
        self.ground_truth: list[dict[str, np.ndarray]] = []
        self.detections: list[dict[str, np.ndarray]] = []
        self.examples: list[dict[str, Any]] = []
        self.boxes_dropped = 0

    def update(self, fetched: Mapping[str, Any]) -> None:
        f = {k: np.asarray(v) for k, v in fetched.items()}
        self.boxes_dropped += int(f.get("box_overflow", 0))
        for i in np.flatnonzero(f["mask"] > 0):
            real = f["box_mask"][i] > 0
            gt = {"boxes": f["boxes"][i][real], "labels": f["box_labels"][i][real], "crowd": f["box_crowd"][i][real]}
            if "box_area" in f:
                gt["area"] = f["box_area"][i][real]
            kept = f["det_mask"][i] > 0
            det = {"boxes": f["det_boxes"][i][kept], "scores": f["det_scores"][i][kept]}
            det["labels"] = f["det_classes"][i][kept]
            self.ground_truth.append(gt)
            self.detections.append(det)
            if "image" in f and i < len(f["image"]) and len(self.examples) < self.draw_images:
                self.examples.append(self._example(f["image"][i], gt, det))

    def _example(self, image: np.ndarray, gt: dict[str, np.ndarray], det: dict[str, np.ndarray]) -> dict[str, Any]:
        shown = det["scores"] >= self.score_threshold_for_drawing
        return {
            "image_png": _png(image),
            "gt_boxes": gt["boxes"].tolist(),
            "gt_labels": gt["labels"].tolist(),
            "gt_crowd": (gt["crowd"] > 0).tolist(),
            "det_boxes": det["boxes"][shown].tolist(),
            "det_scores": det["scores"][shown].tolist(),
            "det_classes": det["labels"][shown].tolist(),
        }

    def result(self) -> tuple[dict[str, float], dict[str, Any]]:
        ev = detection.coco_evaluate(
            self.ground_truth,
            self.detections,
            num_classes=self.num_classes,
            iou_thresholds=self.iou_thresholds,
            area_ranges=self.area_ranges,
            max_detections=self.max_detections,
        )
        t = int(np.argmin(np.abs(ev.iou_thresholds - 0.5)))
        scores = [d["scores"] for d in self.detections]
        all_scores = np.concatenate(scores) if scores else np.zeros(0)
        # Scores are usually probabilities; the grid stretches to cover any outside [0, 1].
        grid = np.linspace(min(0.0, all_scores.min(initial=0.0)), max(1.0, all_scores.max(initial=1.0)), 101)
        grid, precision, recall = detection.precision_recall_at_thresholds(
            self.ground_truth,
            self.detections,
            iou_threshold=float(ev.iou_thresholds[t]),
            thresholds=grid,
            num_classes=self.num_classes,
            max_detections=self.max_detections[-1],
        )
        # Above the highest score no detection passes and precision is undefined: the curve ends there.
        passed = ~np.isnan(precision)
        grid, precision, recall = grid[passed], precision[passed], recall[passed]
        extras = {
            "per_class_ap": ev.per_class_ap().tolist(),
            "pr_curves": {
                "iou_threshold": float(ev.iou_thresholds[t]),
                "recall": ev.recall_points.tolist(),
                "precision": ev.pr_curves(float(ev.iou_thresholds[t])).tolist(),
            },
            "precision_recall_by_score": {
                "iou_threshold": float(ev.iou_thresholds[t]),
                "thresholds": grid.tolist(),
                "precision": precision.tolist(),
                "recall": recall.tolist(),
            },
            "detection_examples": list(self.examples),
            "boxes_dropped": self.boxes_dropped,
        }
        return {k: float(v) for k, v in ev.stats.items()}, extras

    def _name(self, c: int) -> str:
        return self.class_names[c] if c < len(self.class_names) else str(c)

    def plot(self, extras: Mapping[str, Any], directory: Path, prefix: str) -> list[Path]:
        directory = Path(directory)
        paths = [self._plot_curves(extras, directory / f"precision_recall_{prefix}.png", prefix)]
        if extras.get("detection_examples"):
            paths.append(self._plot_examples(extras["detection_examples"], directory / f"detections_{prefix}.png"))
        return paths

    def _plot_curves(self, extras: Mapping[str, Any], path: Path, prefix: str) -> Path:
        curves, by_score = extras["pr_curves"], extras["precision_recall_by_score"]
        precision = np.asarray(curves["precision"], np.float64).reshape(-1, len(curves["recall"]))
        ap = np.asarray(extras["per_class_ap"], np.float64)
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
        colors = plt.get_cmap("tab20" if len(precision) > 10 else "tab10")
        for c, p in enumerate(precision):
            if np.isfinite(p).any():  # a class without ground truth has no curve
                ap50 = np.mean(p)  # the mean over recall points at this IoU is the class's AP at it
                label = f"{self._name(c)} AP50 {ap50:.3f}, AP {ap[c]:.3f}" if len(precision) <= 20 else None
                left.plot(curves["recall"], p, color=colors(c % colors.N), label=label, linewidth=1.2)
        left.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="interpolated precision")
        left.set_title(f"{prefix}: per class, IoU {curves['iou_threshold']:.2f}")
        if left.get_legend_handles_labels()[0]:
            left.legend(fontsize=7, loc="lower left")
        left.grid(alpha=0.3)
        right.plot(by_score["thresholds"], by_score["precision"], label="precision")
        right.plot(by_score["thresholds"], by_score["recall"], label="recall")
        right.set(ylim=(0, 1.02), xlabel="score threshold (detections >= it)")
        right.set_title(f"{prefix}: all classes, IoU {by_score['iou_threshold']:.2f}")
        right.legend()
        right.grid(alpha=0.3)
        return _save(fig, path)

    def _plot_examples(self, examples: Sequence[Mapping[str, Any]], path: Path) -> Path:
        images = [_unpng(ex["image_png"]) for ex in examples]
        aspect = max(image.shape[0] / image.shape[1] for image in images)
        fig, axes = plt.subplots(len(examples), 2, figsize=(8, (4 * aspect + 0.4) * len(examples)), squeeze=False)
        for row, ex, image in zip(axes, examples, images, strict=True):
            h, w = image.shape[:2]
            for ax, title in zip(
                row, ("ground truth", f"detections, score >= {self.score_threshold_for_drawing}"), strict=True
            ):
                # extent puts pixel i on [i, i + 1], the box contract's continuous coordinates.
                ax.imshow(image, extent=(0, w, h, 0), interpolation="nearest")
                ax.set_title(title, fontsize=9)
                ax.set_axis_off()
            for box, label, crowd in zip(ex["gt_boxes"], ex["gt_labels"], ex["gt_crowd"], strict=True):
                self._box(
                    row[0], box, self._name(label) + (" (crowd)" if crowd else ""), "lime", "--" if crowd else "-"
                )
            order = np.argsort(ex["det_scores"])  # the best drawn last, on top
            for j in order:
                label = f"{self._name(ex['det_classes'][j])} {ex['det_scores'][j]:.2f}"
                color = plt.get_cmap("tab10")(ex["det_classes"][j] % 10)
                self._box(row[1], ex["det_boxes"][j], label, color, "-")
        return _save(fig, path)

    @staticmethod
    def _box(ax, box: Sequence[float], label: str, color: Any, style: str) -> None:
        y0, x0, y1, x1 = box
        ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color, linestyle=style, lw=1.5))
        ax.text(
            x0, y0, label, fontsize=7, va="bottom", clip_on=True, bbox={"facecolor": color, "pad": 1, "lw": 0}
        )  # clipped: a label past the image would squeeze the layout

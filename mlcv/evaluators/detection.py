"""COCO's detection metrics over a split, of boxes (``detection``) and of instance masks (``mask_detection``):
AP@[.5:.95], AP50, AP75, AP and AR by object size, AR at 1/10/100."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from mlcv.config import ConfigError
from mlcv.evaluators.base import Evaluator
from mlcv.evaluators.classification import check_num_classes
from mlcv.evaluators.plots import _save, image_png, label_png, png_image, png_labels
from mlcv.evaluators.registry import register
from mlcv.metrics import detection, overlaps

#: What the task's predictions hold per example (see :mod:`mlcv.tasks.detection`).
OUTPUT_KEYS = ("det_boxes", "det_scores", "det_classes", "det_mask")
#: What the batch holds per example; ``box_crowd`` and ``box_area`` are optional.
BATCH_KEYS = ("boxes", "box_labels", "box_mask")
#: What ``mask_detection`` reads besides: ``det_masks`` ``[B, K, H, W]`` from the outputs, ``masks`` ``[B, N, H, W]``
#: from the batch.
MASK_OUTPUT_KEYS = (*OUTPUT_KEYS, "det_masks")
MASK_BATCH_KEYS = (*BATCH_KEYS, "masks")


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
    #: The registered name (for messages), what is matched, and the prefix of every scalar, extra and figure file,
    #: so that a box and a mask evaluator can share one run's metrics and plots directory.
    type_name: ClassVar[str] = "detection"
    iou_type: ClassVar[detection.IouType] = "bbox"
    prefix: ClassVar[str] = ""

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
        self.num_classes = check_num_classes(self.type_name, num_classes)
        self.class_names = tuple(class_names)
        self.iou_thresholds = detection.IOU_THRESHOLDS if iou_thresholds is None else np.asarray(iou_thresholds, float)
        ranges = detection.AREA_RANGES if area_ranges is None else dict(area_ranges)
        if "all" not in ranges or any(len(r) != 2 or r[0] > r[1] for r in ranges.values()):
            raise ConfigError(
                f"config.evals: evaluator {self.type_name!r} needs area_ranges as name -> [low, high] (pixels^2) "
                f"with 'all', got {ranges}"
            )
        self.area_ranges = {k: (float(lo), float(hi)) for k, (lo, hi) in ranges.items()}
        self.max_detections = tuple(sorted(int(m) for m in max_detections))
        if not self.max_detections or self.max_detections[0] < 1 or len(self.iou_thresholds) < 1:
            raise ConfigError(
                f"config.evals: evaluator {self.type_name!r} needs max_detections >= 1 and iou_thresholds, "
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
            gt, det = self._ground_truth(f, i), self._detections(f, i)
            self.ground_truth.append(gt)
            self.detections.append(det)
            if "image" in f and i < len(f["image"]) and len(self.examples) < self.draw_images:
                self.examples.append(self._example(f["image"][i], gt, det))

    def _ground_truth(self, f: Mapping[str, np.ndarray], i: int) -> dict[str, Any]:
        """Example ``i``'s real ground-truth rows, as :func:`mlcv.metrics.detection.coco_evaluate` reads them."""
        real = f["box_mask"][i] > 0
        gt = {"boxes": f["boxes"][i][real], "labels": f["box_labels"][i][real], "crowd": f["box_crowd"][i][real]}
        if "box_area" in f:
            gt["area"] = f["box_area"][i][real]
        return gt

    def _detections(self, f: Mapping[str, np.ndarray], i: int) -> dict[str, Any]:
        kept = f["det_mask"][i] > 0
        return {
            "boxes": f["det_boxes"][i][kept],
            "scores": f["det_scores"][i][kept],
            "labels": f["det_classes"][i][kept],
        }

    def _example(self, image: np.ndarray, gt: dict[str, np.ndarray], det: dict[str, np.ndarray]) -> dict[str, Any]:
        shown = det["scores"] >= self.score_threshold_for_drawing
        return {
            "image_png": image_png(image),
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
            iou_type=self.iou_type,
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
            iou_type=self.iou_type,
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
        p = self.prefix
        return {p + k: float(v) for k, v in ev.stats.items()}, {p + k: v for k, v in extras.items()}

    _objects: ClassVar[str] = "boxes"  # for the figures' titles

    def _name(self, c: int) -> str:
        return self.class_names[c] if c < len(self.class_names) else str(c)

    def plot(self, extras: Mapping[str, Any], directory: Path, prefix: str) -> list[Path]:
        directory, p = Path(directory), self.prefix
        # extras may hold other evaluators' entries too (the loop merges them): only this one's prefixed keys count.
        mine = {k[len(p) :]: v for k, v in extras.items() if k.startswith(p)}
        paths = [self._plot_curves(mine, directory / f"{p}precision_recall_{prefix}.png", prefix)]
        if mine.get("detection_examples"):
            paths.append(self._plot_examples(mine["detection_examples"], directory / f"{p}detections_{prefix}.png"))
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
        left.set_title(f"{prefix}: {self._objects} per class, IoU {curves['iou_threshold']:.2f}")
        if left.get_legend_handles_labels()[0]:
            left.legend(fontsize=7, loc="lower left")
        left.grid(alpha=0.3)
        right.plot(by_score["thresholds"], by_score["precision"], label="precision")
        right.plot(by_score["thresholds"], by_score["recall"], label="recall")
        right.set(ylim=(0, 1.02), xlabel="score threshold (detections >= it)")
        right.set_title(f"{prefix}: {self._objects}, all classes, IoU {by_score['iou_threshold']:.2f}")
        right.legend()
        right.grid(alpha=0.3)
        return _save(fig, path)

    def _plot_examples(self, examples: Sequence[Mapping[str, Any]], path: Path) -> Path:
        images = [png_image(ex["image_png"]) for ex in examples]
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
            self._overlay(row, ex, (h, w))
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

    def _overlay(self, row: Sequence[Any], example: Mapping[str, Any], size: tuple[int, int]) -> None:
        """Draws more of ``example`` on its two panels (ground truth, detections) before the boxes; nothing here."""

    @staticmethod
    def _box(ax, box: Sequence[float], label: str, color: Any, style: str) -> None:
        y0, x0, y1, x1 = box
        ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color, linestyle=style, lw=1.5))
        ax.text(
            x0, y0, label, fontsize=7, va="bottom", clip_on=True, bbox={"facecolor": color, "pad": 1, "lw": 0}
        )  # clipped: a label past the image would squeeze the layout


def _packed(masks: jax.Array) -> jax.Array:
    """``[..., H, W]`` masks -> ``[..., ceil(H * W / 8)]`` uint8, :class:`mlcv.metrics.overlaps.PackedMasks`' bits
    (``jnp.packbits`` lays them out as ``np.packbits``); a pixel is in when >= 0.5, a bool mask as it is."""
    m = masks if masks.dtype == jnp.bool_ else masks >= 0.5
    return jnp.packbits(m.reshape(*m.shape[:-2], -1), axis=-1)


def _labels_png(masks: np.ndarray, order: Sequence[int] | None = None) -> str:
    """Instance masks ``[N, H, W]`` drawn one over another in ``order`` (default: as given) into a label image (pixel:
    1 + the index of the mask drawn over it last, 0: none) as a lossless gray PNG; masks past the 255th are left out."""
    labels = np.zeros(masks.shape[1:], np.uint8)
    for j in range(len(masks)) if order is None else order:
        if j < 255:
            labels[masks[j]] = j + 1
    return label_png(labels)


@register("mask_detection")
class MaskDetectionEvaluator(DetectionEvaluator):
    """COCO's twelve instance-mask metrics (``coco_evaluate(iou_type="segm")``, pycocotools' ``COCOeval`` ``segm``).

    Takes the constructor arguments of ``detection`` and reads what it reads, plus the task's ``det_masks``
    ``[B, K, H, W]`` (each detection's mask pasted into the input image: probabilities, a pixel in when >= 0.5, or
    bool) and the batch's ``masks`` ``[B, N, H, W]`` (bool, rows aligned with ``boxes``; padded rows are dropped by
    ``box_mask``). The size range of an object is its mask's pixel count (``box_area`` is not read); ``box_crowd``
    marks crowd regions, whose IoU with a detection is the intersection over the detection's area.

    Everything it returns is prefixed with ``mask_``, so that ``detection`` and ``mask_detection`` share a run:
    scalars ``mask_ap mask_ap50 mask_ap75 mask_ap_small mask_ap_medium mask_ap_large mask_ar1 mask_ar10 mask_ar100
    mask_ar_small mask_ar_medium mask_ar_large``; extras ``mask_per_class_ap``, ``mask_pr_curves``,
    ``mask_precision_recall_by_score``, ``mask_detection_examples`` (with the masks drawn), ``mask_boxes_dropped``;
    figures ``mask_precision_recall_<split>.png`` and ``mask_detections_<split>.png``.

    ``batch_fn`` thresholds and bit-packs the masks on the device (1 bit a pixel, 1/32 of the float32 transfer);
    ``update`` keeps the packed masks of the real rows: 500 images x 100 detections of 96 x 96 take 58 MB.
    """

    directions = {f"mask_{name}": "max" for name in detection.STAT_NAMES}
    percent = frozenset(directions)
    type_name = "mask_detection"
    iou_type = "segm"
    prefix = "mask_"
    _objects = "masks"

    def batch_fn(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        gt, det = batch["masks"], outputs["det_masks"]
        if (
            gt.ndim != 4
            or gt.shape[:2] != batch["box_mask"].shape
            or det.shape != (*outputs["det_mask"].shape, *gt.shape[2:])
        ):
            raise ValueError(
                f"evaluator 'mask_detection' needs masks [B, N, H, W] with box_mask [B, N] and det_masks [B, K, H, W] "
                f"with det_mask [B, K]; got masks {gt.shape}, box_mask {batch['box_mask'].shape}, det_masks "
                f"{det.shape}, det_mask {outputs['det_mask'].shape}"
            )
        out = super().batch_fn(outputs, batch)
        out.pop("box_area", None)  # the mask's pixel count decides the size range
        out["masks"], out["det_masks"] = _packed(gt), _packed(det)
        out["mask_size"] = jnp.array(gt.shape[2:], jnp.int32)
        return out

    def _ground_truth(self, f: Mapping[str, np.ndarray], i: int) -> dict[str, Any]:
        gt = super()._ground_truth(f, i)
        bits = f["masks"][i][f["box_mask"][i] > 0]
        return gt | {"masks": overlaps.PackedMasks(bits, tuple(f["mask_size"]))}

    def _detections(self, f: Mapping[str, np.ndarray], i: int) -> dict[str, Any]:
        det = super()._detections(f, i)
        bits = f["det_masks"][i][f["det_mask"][i] > 0]
        return det | {"masks": overlaps.PackedMasks(bits, tuple(f["mask_size"]))}

    def _example(self, image: np.ndarray, gt: dict[str, Any], det: dict[str, Any]) -> dict[str, Any]:
        ex = super()._example(image, gt, det)
        shown = det["scores"] >= self.score_threshold_for_drawing
        # Label j + 1 is the j-th drawn detection of ex["det_scores"]; the best is drawn last, on top.
        order = np.argsort(det["scores"][shown], kind="stable")
        ex["gt_masks_png"] = _labels_png(gt["masks"].unpack())
        ex["det_masks_png"] = _labels_png(det["masks"].unpack()[shown], order)
        return ex

    def _overlay(self, row: Sequence[Any], example: Mapping[str, Any], size: tuple[int, int]) -> None:
        if "gt_masks_png" not in example:
            return
        h, w = size
        tab10 = plt.get_cmap("tab10")
        det_colors = [tab10(c % 10) for c in example["det_classes"]]
        for ax, text, colors in (
            (row[0], example["gt_masks_png"], [(0.0, 1.0, 0.0, 1.0)] * len(example["gt_labels"])),
            (row[1], example["det_masks_png"], det_colors),
        ):
            labels = png_labels(text)
            rgba = np.zeros((*labels.shape, 4))
            for j, color in enumerate(colors[:255]):
                rgba[labels == j + 1] = (*color[:3], 0.45)
            ax.imshow(rgba, extent=(0, w, h, 0), interpolation="nearest")

"""What every detector shares: the batch contract, the class count, the evaluators and the output format.

Batches carry ``image`` ``[B, H, W, C]`` and the boxes of the data contract, padded to a fixed count by
the ``pad_boxes(n)`` op: ``boxes`` ``[B, n, 4]`` ``(ymin, xmin, ymax, xmax)`` in pixels of the input
image, ``box_labels`` ``[B, n]`` (class ``0..C-1``, no background class) and ``box_mask`` ``[B, n]``
(1 for a real box). A detector's :meth:`~mlcv.tasks.base.Task.predict` returns, per image, up to
``config.detection.max_detections`` detections in the same frame:

- ``det_boxes`` ``[B, K, 4]``, ``det_scores`` ``[B, K]``, ``det_classes`` ``[B, K]`` (int32),
  ``det_mask`` ``[B, K]`` (1 for a real detection);
- ``loss`` ``[B]``, each image's training loss.

The ``detection`` evaluator (COCO's AP@[.5:.95], AP50, AP75, by size, recalls) reads those keys; the
headline is ``ap``. Config keys under ``config.detection`` (all optional): ``max_detections`` (100, as
COCO scores at most 100 detections an image).

Bad input: boxes outside the image are clipped by the geometric ops, and boxes that a crop leaves empty
become padding rows (:func:`mlcv.data.ops.boxes.set_boxes`); an image without objects trains on
background only. An image with more boxes than ``pad_boxes(n)`` keeps its first ``n``: the boxes dropped are
logged as ``train/boxes_dropped`` in ``metrics.jsonl`` and counted in the detection evaluator's
``boxes_dropped`` extra, so a too small ``n`` shows; ``pad_boxes(n, error=True)`` makes it an error instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from mlcv.config import ConfigError
from mlcv.tasks.base import Task

#: The keys of a detector's predictions that the detection evaluator reads.
DETECTION_KEYS = ("det_boxes", "det_scores", "det_classes", "det_mask")


class DetectionTask(Task):
    """Base of the detectors: reads the box classes from the dataset, checks the padding, sets the evaluators."""

    input_keys = ("image",)
    target_keys = ("boxes", "box_labels", "box_mask")
    headline = "ap"
    also_reported = ("ap50", "ap75")

    def __init__(self, config: ml_collections.ConfigDict, meta: Any, runs: Sequence[Any] = ()):
        name = config.data.name
        features = getattr(meta, "features", {})
        if "boxes" not in features or "box_labels" not in features:
            raise ConfigError(f"dataset {name!r} (config.data.name) has no 'boxes' and 'box_labels' to detect")
        self.num_classes = features["box_labels"].num_classes
        if not self.num_classes:
            raise ConfigError(f"dataset {name!r} (config.data.name) declares no box classes")
        self.class_names = tuple(features["box_labels"].class_names or ())
        # Per-box rows of catalogue datasets (decode_detection) that the detection evaluator reads: crowd
        # regions are neither hits nor misses, and COCO's size ranges use the annotated area.
        extra = ("box_overflow", *(k for k in ("box_crowd", "box_area") if k in features))
        self.target_keys = (*type(self).target_keys, *extra)
        for key in ("pp_train", "pp_eval"):
            # Images hold different numbers of boxes; only padded rows batch into one array.
            if "pad_boxes(" not in str(config.data.get(key, "")):
                raise ConfigError(
                    f"config.data.{key} = {config.data.get(key)!r} must pad the boxes to a fixed count "
                    "with pad_boxes(n) so that images with different box counts batch together"
                )
        det = config.get("detection") or {}
        self.max_detections = int(det.get("max_detections", 100))
        if self.max_detections < 1:
            raise ConfigError(f"config.detection.max_detections must be >= 1, got {self.max_detections}")
        super().__init__(config, meta, runs)

    def train_metrics(self, outputs: Any, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """``boxes_dropped``: boxes of the batch beyond ``pad_boxes(n)``'s ``n``, lost to training (should be 0)."""
        del outputs
        return {"boxes_dropped": jnp.sum(batch["box_overflow"]).astype(jnp.float32)}

    def default_evaluators(self) -> dict[str, dict[str, Any]]:
        """The loss, and COCO's average precisions and recalls over the split."""
        det: dict[str, Any] = {"type": "detection", "num_classes": self.num_classes}
        if self.class_names:
            det["class_names"] = self.class_names
        return {"loss": {"type": "loss"}, "detection": det}

    def chance(self) -> dict[str, float]:
        """Without learning, no detection lands on an object: AP 0."""
        return {"ap50": 0.0}

"""Semantic segmentation: a class per pixel, trained with per-pixel softmax cross-entropy.

Batches are ``{'image': [B, H, W, C], 'segmentation': [B, H, W] class ids}``; the model returns logits
``[B, h, w, num_classes]``. Config keys (all optional), under ``config.segmentation``:

- ``ignore_label`` (default 255): pixels with this label count in neither the loss nor the metrics;
  ``None`` counts every pixel;
- ``exclude_from_mean`` (default ``()``): classes left out of the mIoU's mean (e.g. background 0), kept
  in the pixel accuracy and the per-class extras;
- ``boundary_width`` (default 0): when > 0, the evaluator also scores the band of pixels within that many pixels
  of a ground-truth boundary (``boundary_miou``, ``boundary_pixel_accuracy``: the DeepLab papers' trimap).

Bad input: a label that is neither a class ``0..C-1`` nor the ignore label stops the run with a ConfigError naming
the dataset, the key and the labels (:meth:`SegmentationTask.range_checks`, checked on the host by the data
pipeline; on the device it would pass silently). A label map whose size differs from its image stops the run when the
step is traced, with a ConfigError naming the dataset and both shapes (the logits would otherwise be resized to
the labels silently).

Departures from the course's plain recipe, and why:

- logits coarser than the labels are upsampled bilinearly (:func:`jax.image.resize`) before the loss and
  the metrics, rather than the labels downsampled: the evaluator scores every labelled pixel;
- the training loss averages over the labelled pixels of the whole batch, while the per-example loss
  that evaluation averages is each image's mean over its own labelled pixels; the two agree when every
  image has as many labelled pixels (as on ``bodies``, which has no ignored pixels);
- an image without labelled pixels (or a padded row of an evaluation batch) has per-example loss 0,
  not NaN, so that the loss evaluator's masking (``loss * mask``) stays finite.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from mlcv import models
from mlcv.config import ConfigError
from mlcv.tasks.base import StepContext, Task


def at_resolution(logits: jax.Array, shape: Sequence[int]) -> jax.Array:
    """``logits`` ``[B, h, w, C]`` resized bilinearly to ``[B, H, W, C]`` for ``shape = (H, W)`` (as is if equal)."""
    size = tuple(int(s) for s in shape)
    if logits.shape[1:3] == size:
        return logits
    return jax.image.resize(logits, (logits.shape[0], *size, logits.shape[-1]), "bilinear")


def pixel_losses(
    logits: jax.Array, labels: jax.Array, ignore_label: int | None
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per-pixel cross-entropy, the labelled-pixel weights and the logits at the labels' resolution.

    Args:
      logits: ``[B, h, w, C]``.
      labels: ``[B, H, W]`` (or ``[B, H, W, 1]``) class ids, any integer dtype.
      ignore_label: the label of pixels left out, or None.

    Returns:
      ``(ce, valid, logits)``: ``ce`` ``[B, H, W]`` (0 where ignored), ``valid`` ``[B, H, W]`` float32
      (1 for a labelled pixel) and ``logits`` ``[B, H, W, C]``.
    """
    if labels.ndim == 4 and labels.shape[-1] == 1:
        labels = labels[..., 0]
    labels = labels.astype(jnp.int32)  # uint8 label maps; 255 must not wrap when compared
    logits = at_resolution(logits, labels.shape[1:3])
    valid = jnp.ones(labels.shape, bool) if ignore_label is None else labels != ignore_label
    # An ignored pixel's label may lie outside 0..C-1; any in-range stand-in keeps the CE finite.
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(valid, labels, 0))
    valid = valid.astype(jnp.float32)
    return ce * valid, valid, logits


def _per_example_mean(values: jax.Array, valid: jax.Array) -> jax.Array:
    """The mean of ``values`` over each example's valid pixels ``[B]``; 0 for an example without any."""
    axes = tuple(range(1, values.ndim))
    return jnp.sum(values, axes) / jnp.maximum(jnp.sum(valid, axes), 1.0)


class SegmentationTask(Task):
    """A per-pixel classifier trained on batches ``{'image', 'segmentation'}``; the model returns logits."""

    input_keys = ("image",)
    target_keys = ("segmentation",)
    headline = "miou"
    also_reported = ("pixel_accuracy", "fw_iou", "boundary_miou")

    def __init__(self, config: ml_collections.ConfigDict, meta: Any, runs: Sequence[Any] = ()):
        seg = config.get("segmentation") or {}
        self.ignore_label: int | None = seg.get("ignore_label", 255)
        self.exclude_from_mean = tuple(int(c) for c in (seg.get("exclude_from_mean") or ()))
        self.boundary_width = int(seg.get("boundary_width") or 0)
        feature = getattr(meta, "features", {}).get("segmentation")
        if feature is None:
            raise ConfigError(f"dataset {config.data.name!r} (config.data.name) has no 'segmentation' key to learn")
        # The label map's own class count: a dataset may also carry an image-level label.
        self.num_classes = feature.num_classes or getattr(meta, "num_classes", None)
        if not self.num_classes:
            raise ConfigError(f"dataset {config.data.name!r} (config.data.name) declares no segmentation classes")
        self.class_names = tuple(feature.class_names or ())
        super().__init__(config, meta, runs)

    def range_checks(self) -> dict[str, tuple[int, int | None]]:
        """Every pixel's label is a class ``0..C-1`` or the ignore label: others stop the run with the dataset named."""
        return {"segmentation": (self.num_classes, self.ignore_label)}

    def build_model(self) -> nn.Module:
        """``config.model`` with as many outputs per pixel as the label maps have classes."""
        return models.from_config(self.config.model, num_classes=self.num_classes)

    def _check_sizes(self, batch: Mapping[str, jax.Array]) -> None:
        """Label maps at the images' size (a static check, at tracing; a batch without images is not checked)."""
        image, labels = getattr(batch.get("image"), "shape", None), batch["segmentation"].shape
        if image is not None and tuple(image[1:3]) != tuple(labels[1:3]):
            raise ConfigError(
                f"dataset {self.config.data.name!r} (config.data.name): segmentation maps {tuple(labels)} do not "
                f"match the images {tuple(image)} in height and width"
            )

    def losses(self, outputs: jax.Array, batch: Mapping[str, jax.Array], context: StepContext) -> dict[str, jax.Array]:
        """``softmax_xent``: the cross-entropy averaged over the batch's labelled pixels."""
        del context  # the plain task needs nothing else
        self._check_sizes(batch)
        ce, valid, _ = pixel_losses(outputs, batch["segmentation"], self.ignore_label)
        return {"softmax_xent": jnp.sum(ce) / jnp.maximum(jnp.sum(valid), 1.0)}

    def train_metrics(self, outputs: jax.Array, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """Pixel accuracy of the training batch over its labelled pixels."""
        _, valid, logits = pixel_losses(outputs, batch["segmentation"], self.ignore_label)
        labels = batch["segmentation"].reshape(valid.shape).astype(jnp.int32)
        hits = (jnp.argmax(logits, -1) == labels) * valid
        return {"pixel_accuracy": jnp.sum(hits) / jnp.maximum(jnp.sum(valid), 1.0)}

    def predict(self, outputs: jax.Array, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """Logits at the labels' resolution and each image's mean cross-entropy over its labelled pixels."""
        self._check_sizes(batch)
        ce, valid, logits = pixel_losses(outputs, batch["segmentation"], self.ignore_label)
        return {"logits": logits, "loss": _per_example_mean(ce, valid)}

    def combine(self, predictions: Sequence[Mapping[str, jax.Array]], batch: Mapping[str, jax.Array]) -> dict:
        """Averages the members' per-pixel class probabilities; its log stands for the logits, the loss is its NLL."""
        probs = jnp.mean(jnp.stack([jax.nn.softmax(p["logits"], -1) for p in predictions]), axis=0)
        log_probs = jnp.log(jnp.maximum(probs, jnp.finfo(probs.dtype).tiny))
        # log_softmax of log-probabilities that sum to 1 is themselves: the CE is the NLL.
        ce, valid, _ = pixel_losses(log_probs, batch["segmentation"], self.ignore_label)
        return {"logits": log_probs, "probs": probs, "loss": _per_example_mean(ce, valid)}

    def default_evaluators(self) -> dict[str, dict[str, Any]]:
        """The loss, and mIoU, pixel / mean accuracy and frequency-weighted IoU from one confusion matrix."""
        seg = {
            "type": "segmentation",
            "num_classes": self.num_classes,
            "ignore_label": self.ignore_label,
            "exclude_from_mean": self.exclude_from_mean,
        }
        if self.class_names:
            seg["class_names"] = self.class_names
        if self.boundary_width:
            seg["boundary_width"] = self.boundary_width
        return {"loss": {"type": "loss"}, "segmentation": seg}

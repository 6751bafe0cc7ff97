"""Classification with localization (course eq. 48): one object per image, its class and its box.

Any classifier of the model zoo becomes a localizer by asking it for ``C + 4`` outputs: ``C`` class scores
and 4 box numbers, both read from the same features (two fully connected heads on one feature vector are
one layer with the outputs side by side). The loss is

    L = CE(softmax(s), y) + lambda * sum_j ell(b_j - b*_j)

with ``ell`` the squared error (``box_loss="l2"``, half of it, as optax's ``l2_loss``) or the smooth L1 of
Fast R-CNN (``"smooth_l1"``). The box is parametrised as its centre and size divided by the image size,
``(cy / H, cx / W, h / H, w / W)``, so that lambda does not depend on the image size.

Batches carry the padded boxes of the data contract with one row (``pad_boxes(1)``): the first box and its
label are the object. Config keys under ``config.detection``: ``box_loss`` ("smooth_l1"), ``box_weight``
(lambda, 1.0), ``box_beta`` (the smooth L1's ``beta``, 1.0 as Fast R-CNN's: on codes that are fractions of
the image, errors stay under 1 and the loss is the L2's; a smaller beta keeps pulling a box a few pixels off,
0 is plain L1). Fine-tuning a classification run's weights: ``config.init_from.workdir``
(:mod:`mlcv.training.transfer`; the output layer, whose shape differs, starts fresh).
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
from mlcv.ops.box_coding import smooth_l1
from mlcv.tasks.base import StepContext
from mlcv.tasks.detection import DetectionTask

BOX_LOSSES = ("l2", "smooth_l1")


def to_centre_size(boxes: jax.Array, height: int, width: int) -> jax.Array:
    """``(ymin, xmin, ymax, xmax)`` pixels -> ``(cy / H, cx / W, h / H, w / W)``."""
    scale = jnp.array([height, width], jnp.float32)
    centre, size = (boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]
    return jnp.concatenate([centre / scale, size / scale], -1)


def from_centre_size(code: jax.Array, height: int, width: int) -> jax.Array:
    """The inverse of :func:`to_centre_size`, clipped to the image."""
    scale = jnp.array([height, width], jnp.float32)
    centre, half = code[..., :2] * scale, jnp.abs(code[..., 2:]) * scale / 2
    return jnp.clip(jnp.concatenate([centre - half, centre + half], -1), 0.0, jnp.tile(scale, 2))


class LocalizationTask(DetectionTask):
    """One object per image: softmax class scores and a regressed box from one zoo classifier."""

    def __init__(self, config: ml_collections.ConfigDict, meta: Any, runs: Sequence[Any] = ()):
        det = config.get("detection") or {}
        self.box_loss = det.get("box_loss", "smooth_l1")
        if self.box_loss not in BOX_LOSSES:
            raise ConfigError(f"config.detection.box_loss={self.box_loss!r}; valid: {', '.join(BOX_LOSSES)}")
        self.box_weight = float(det.get("box_weight", 1.0))
        self.box_beta = float(det.get("box_beta", 1.0))
        if self.box_beta < 0:
            raise ConfigError(f"config.detection.box_beta={self.box_beta}; it must be >= 0 (0: plain L1)")
        super().__init__(config, meta, runs)
        for key in ("pp_train", "pp_eval"):
            if "pad_boxes(1)" not in str(config.data.get(key)).replace(" ", ""):
                raise ConfigError(f"config.data.{key}: the localization task reads one box an image: use pad_boxes(1)")

    def build_model(self) -> nn.Module:
        """``config.model`` (any classifier of the zoo) with ``C + 4`` outputs."""
        return models.from_config(self.config.model, num_classes=self.num_classes + 4)

    def _split(self, outputs: jax.Array, batch: Mapping[str, jax.Array]):
        logits, code = outputs[..., : self.num_classes], outputs[..., self.num_classes :]
        labels = batch["box_labels"][:, 0].astype(jnp.int32)
        target = to_centre_size(batch["boxes"][:, 0].astype(jnp.float32), *batch["image"].shape[1:3])
        diff = code.astype(jnp.float32) - target
        box = jnp.sum(optax.l2_loss(diff) if self.box_loss == "l2" else smooth_l1(diff, self.box_beta), -1)
        valid = batch["box_mask"][:, 0].astype(jnp.float32)  # an image without its object regresses nothing
        ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels) * valid
        return logits, code, ce, self.box_weight * box * valid, valid

    def losses(self, outputs: jax.Array, batch: Mapping[str, jax.Array], context: StepContext) -> dict[str, jax.Array]:
        """``softmax_xent`` and ``box`` (lambda times the box loss), means over the images with an object."""
        del context
        _, _, ce, box, valid = self._split(outputs, batch)
        n = jnp.maximum(jnp.sum(valid), 1.0)
        return {"softmax_xent": jnp.sum(ce) / n, "box": jnp.sum(box) / n}

    def train_metrics(self, outputs: jax.Array, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """Class accuracy of the training batch."""
        logits, *_ = self._split(outputs, batch)
        accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["box_labels"][:, 0])
        return {**super().train_metrics(outputs, batch), "accuracy": accuracy}

    def predict(self, outputs: jax.Array, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """One detection an image: the argmax class, its probability as the score, the regressed box."""
        logits, code, ce, box, _ = self._split(outputs, batch)
        probs = jax.nn.softmax(logits.astype(jnp.float32), -1)
        return {**self._detections(probs, code, batch), "probs": probs, "box_code": code, "loss": ce + box}

    def _detections(self, probs: jax.Array, code: jax.Array, batch: Mapping[str, jax.Array]) -> dict:
        boxes = from_centre_size(code.astype(jnp.float32), *batch["image"].shape[1:3])
        return {
            "det_boxes": boxes[:, None],
            "det_scores": jnp.max(probs, -1)[:, None],
            "det_classes": jnp.argmax(probs, -1).astype(jnp.int32)[:, None],
            "det_mask": jnp.ones((probs.shape[0], 1), jnp.float32),
        }

    def combine(self, predictions: Sequence[Mapping[str, jax.Array]], batch: Mapping[str, jax.Array]) -> dict:
        """The mean of the members' class probabilities and box codes; the loss is the members' mean."""
        mean = {k: jnp.mean(jnp.stack([p[k] for p in predictions]), 0) for k in ("probs", "box_code", "loss")}
        return {**self._detections(mean["probs"], mean["box_code"], batch), **mean}

"""Mask R-CNN (He et al. 2017): Faster R-CNN with FPN plus a mask branch, instance segmentation (course §11.4).

:class:`MaskRCNNTask` is :class:`mlcv.tasks.faster_rcnn.FasterRCNNTask` (the same RPN, proposals, RoI sampling,
box losses and decoding) with the mask head of :class:`mlcv.models.mask_rcnn.MaskRCNN` run after the two stages
(:meth:`MaskRCNNTask.extra_outputs`):

- **Training targets.** The head runs on the foreground RoIs of the second stage's sample only (at most
  ``int(roi_batch_size * roi_positive_fraction)`` an image, gathered into that many rows, padding rows with no
  loss). Each one's target is the instance mask of the gt box it matched (IoU ``>= roi_foreground_iou``, the
  box head's match), cut at the RoI's box by RoIAlign to ``28 x 28`` and thresholded at ``>= 0.5``
  (:func:`mlcv.ops.masks.crop_masks`: ``aligned=True``, 2 samples a cell and axis, detectron2's targets).
- **Loss** (:func:`mask_loss`): the binary cross-entropy of each pixel of the ``28 x 28``, on the logits of the
  RoI's gt class only (a sigmoid per class: the other classes' channels get no gradient, the paper's
  decoupling), averaged over the RoI's pixels, then over the batch's foreground RoIs: the ``roi_mask`` term,
  times ``mask_weight``, beside Faster R-CNN's four terms. The per-image ``loss`` of :meth:`predict` adds the
  image's own average (over the fixed-key sample of :mod:`mlcv.tasks.faster_rcnn`).
- **Inference.** The head runs on the final detections (after NMS: the ``det_*`` keys of Faster R-CNN's
  :func:`~mlcv.tasks.faster_rcnn.detect`); each detection's class channel through its sigmoid is pasted into the
  image (:func:`mlcv.ops.masks.paste_masks`: bilinear inside the box, half-pixel centres, 0 outside), giving
  ``det_masks`` ``[B, K, H, W]`` float probabilities (a pixel belongs to the object at ``>= 0.5``, the
  ``mask_detection`` evaluator's rule), 0 for padding rows.

Evaluators: ``detection`` (box AP, ``ap``) and ``mask_detection`` (mask AP, ``mask_ap``, ``mask_ap50``, ...);
the headline is ``mask_ap``. Ensembles (:meth:`MaskRCNNTask.combine`): the members' detections pooled and
suppressed again by class-aware NMS, each keeping its own mask.

Batches carry the instance masks: ``masks`` ``[B, N, H, W]`` bool, rows aligned with ``boxes`` / ``box_labels``
/ ``box_mask`` (``pad_boxes(n)`` pads them, the geometric ops move them with the image); the dataset must declare
a ``masks`` feature of its images' size.

Config keys: under ``config.detection``, Faster R-CNN's and ``mask_weight`` (1.0, the paper's); under
``config.model``, :class:`~mlcv.models.mask_rcnn.MaskRCNN`'s ``mask_pool_size`` (14), ``mask_features`` (256)
and ``mask_convs`` (4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from mlcv.config import ConfigError
from mlcv.ops import anchors as anchor_ops
from mlcv.ops.masks import crop_masks, paste_masks
from mlcv.ops.nms import batched_nms
from mlcv.tasks.base import StepContext
from mlcv.tasks.detection import DETECTION_KEYS
from mlcv.tasks.faster_rcnn import FasterRCNNTask, _take, gather_sampled


def mask_loss(logits: jax.Array, targets: jax.Array, classes: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-image sums ``[B]`` of the RoIs' mean mask BCE, and the counts ``[B]`` of RoIs in them.

    ``logits [B, R, M, M, K]`` (channel ``c - 1`` for object class ``c``), binary ``targets [B, R, M, M]`` and
    ``classes [B, R]``, the box head's classes (``1..K``; 0, background or padding, has no mask loss). A RoI's
    term is the sigmoid cross-entropy of its class's channel, averaged over its ``M x M`` pixels.
    """
    classes = classes.astype(jnp.int32)
    channel = jnp.maximum(classes - 1, 0)[:, :, None, None, None]
    own = jnp.take_along_axis(logits, channel, axis=-1)[..., 0]
    bce = jnp.mean(optax.sigmoid_binary_cross_entropy(own, targets), axis=(2, 3))
    positive = classes > 0
    return jnp.sum(jnp.where(positive, bce, 0.0), 1), jnp.sum(positive, 1).astype(jnp.float32)


class MaskRCNNTask(FasterRCNNTask):
    """Faster R-CNN's task plus the mask head's targets, loss and pasted masks; see the module docstring."""

    target_keys = (*FasterRCNNTask.target_keys, "masks")
    headline = "mask_ap"
    also_reported = ("mask_ap50", "mask_ap75", "ap")

    def __init__(self, config: ml_collections.ConfigDict, meta: Any, runs: Sequence[Any] = ()):
        name = config.data.name
        features = getattr(meta, "features", {})
        if "masks" not in features:
            raise ConfigError(
                f"dataset {name!r} (config.data.name) has no 'masks' feature: Mask R-CNN trains on instance masks "
                f"[N, H, W] aligned with the boxes; it has {sorted(features)}"
            )
        image, masks = features["image"].shape if "image" in features else None, features["masks"].shape
        if image is None or len(masks) != 3 or tuple(masks[1:]) != tuple(image[:2]):
            raise ConfigError(
                f"dataset {name!r} (config.data.name): instance masks of shape {masks} (N, H, W) do not match its "
                f"images of shape {image} (H, W, C); Mask R-CNN needs one mask pixel per image pixel"
            )
        for key in ("pp_train", "pp_eval"):
            pp = str(config.data.get(key, ""))
            if "keep(" in pp and "masks" not in pp.split("keep(", 1)[1].split(")", 1)[0]:
                raise ConfigError(f"config.data.{key} = {pp!r} drops 'masks' (its keep(...)); Mask R-CNN needs them")
        det = config.get("detection") or {}
        self.mask_weight = float(det.get("mask_weight", 1.0))
        if self.mask_weight < 0:
            raise ConfigError(f"config.detection.mask_weight must be >= 0, got {self.mask_weight}")
        super().__init__(config, meta, runs)
        o = self.options
        self.mask_rois = max(1, int(int(o["roi_batch_size"]) * float(o["roi_positive_fraction"])))

    def build_model(self) -> nn.Module:
        """Faster R-CNN's model, which must have a mask head (``config.model.name`` a Mask R-CNN)."""
        model = super().build_model()
        if not hasattr(model, "mask_logits"):
            raise ConfigError(
                f"config.model.name = {self.config.model.name!r} has no mask head: use mask_rcnn (or _mask_rcnn_tiny)"
            )
        return model

    def _mask_logits(self, params: Any, pyramid: Any, boxes: jax.Array) -> jax.Array:
        return self.model.apply({"params": params}, pyramid, boxes, method="mask_logits")

    def extra_outputs(self, params: Any, pyramid: Any, outputs: dict, batch: Mapping, train: bool) -> dict:
        """The mask head on the foreground RoIs with their targets; at inference also the detections and their
        ``det_mask_probs`` ``[B, K, 28, 28]`` (the sigmoid of each detection's class channel).
        """
        image, masks = batch["image"].shape, batch["masks"].shape
        if len(masks) != 4 or masks[2:] != image[1:3]:
            raise ValueError(
                f"Mask R-CNN: batch 'masks' of shape {masks} [B, N, H, W] do not match 'image' of shape {image} "
                "[B, H, W, C]: the preprocessing must move the masks with the image (pad_boxes(n) pads them)"
            )
        o = self.options
        foreground = (outputs["roi_sampled"] > 0) & (outputs["roi_classes"] > 0)
        index, ok = gather_sampled(foreground, self.mask_rois)
        rois = _take(outputs["rois"], index)
        classes = jnp.where(ok, _take(outputs["roi_classes"], index), 0).astype(jnp.int32)
        boxes, valid = batch["boxes"].astype(jnp.float32), batch["box_mask"]
        fg, bg = float(o["roi_foreground_iou"]), float(o["roi_background_iou"])
        # The box head's match again, for the gt row (a foreground RoI's best gt box at IoU >= fg).
        gt = jax.vmap(lambda r, b, v: anchor_ops.match(r, b, v, fg, bg, False))(rois, boxes, valid)
        size = self.model.mask_size
        targets = crop_masks(batch["masks"], rois, jnp.maximum(gt, 0), size)
        out = {
            "mask_rois": rois,
            "mask_classes": classes,
            "mask_targets": jax.lax.stop_gradient(targets),
            "mask_logits": self._mask_logits(params, pyramid, rois),
        }
        if not train:
            det = super().predict(outputs, batch)  # Faster R-CNN's detections (its per-image loss is not used)
            det = {k: det[k] for k in DETECTION_KEYS}
            logits = self._mask_logits(params, pyramid, det["det_boxes"])
            own = jnp.take_along_axis(logits, det["det_classes"][:, :, None, None, None], axis=-1)[..., 0]
            out |= {**det, "det_mask_probs": jax.nn.sigmoid(own)}
        return out

    def _mask_terms(self, outputs: Mapping[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
        return mask_loss(outputs["mask_logits"], outputs["mask_targets"], outputs["mask_classes"])

    def losses(
        self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array], context: StepContext
    ) -> dict[str, jax.Array]:
        """Faster R-CNN's four terms and ``roi_mask``: ``mask_weight`` x the mean BCE of the foreground RoIs."""
        total, count = self._mask_terms(outputs)
        roi_mask = self.mask_weight * jnp.sum(total) / jnp.maximum(jnp.sum(count), 1.0)
        return {**super().losses(outputs, batch, context), "roi_mask": roi_mask}

    def predict(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """The detections of :meth:`extra_outputs` with their masks pasted into the image, and each image's loss."""
        det = {k: outputs[k] for k in DETECTION_KEYS}
        det["det_classes"] = det["det_classes"].astype(jnp.int32)  # the step hands the outputs over as float32
        pasted = paste_masks(outputs["det_mask_probs"], det["det_boxes"], batch["image"].shape[1:3])
        total, count = self._mask_terms(outputs)
        loss = sum(self._normalised(self._terms(outputs)).values()) + self.mask_weight * total / jnp.maximum(count, 1)
        return {**det, "det_masks": pasted * (det["det_mask"] > 0)[..., None, None], "loss": loss}

    def combine(self, predictions: Sequence[Mapping[str, jax.Array]], batch: Mapping[str, jax.Array]) -> dict:
        """The members' detections pooled and suppressed again (class-aware NMS), each with its mask."""
        del batch
        cat = {k: jnp.concatenate([p[k] for p in predictions], axis=1) for k in (*DETECTION_KEYS, "det_masks")}
        classes = cat["det_classes"].astype(jnp.int32)
        keep, mask = batched_nms(
            cat["det_boxes"], cat["det_scores"], classes, float(self.options["nms_threshold"]), self.max_detections,
            -jnp.inf, cat["det_mask"] > 0,
        )  # fmt: skip
        at = jnp.maximum(keep, 0)
        out = {}
        for k, v in {**cat, "det_classes": classes}.items():
            kept = _take(v, at)
            out[k] = jnp.where(mask.reshape(mask.shape + (1,) * (kept.ndim - 2)), kept, jnp.zeros((), kept.dtype))
        out["det_mask"] = mask.astype(jnp.float32)
        return {**out, "loss": jnp.mean(jnp.stack([p["loss"] for p in predictions]), axis=0)}

    def default_evaluators(self) -> dict[str, dict[str, Any]]:
        """Faster R-CNN's (the loss, box AP) and the masks' AP (``mask_detection``)."""
        evals = super().default_evaluators()
        return {**evals, "mask_detection": {**evals["detection"], "type": "mask_detection"}}

    def chance(self) -> dict[str, float]:
        """Without learning, no detection lands on an object: box and mask AP 0."""
        return {"ap50": 0.0, "mask_ap50": 0.0}

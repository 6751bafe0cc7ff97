"""RetinaNet (Lin et al. 2017): dense anchors on a feature pyramid, the focal loss, class-aware NMS (course §10.2).

Anchors: at each level ``l`` of stride ``s_l``, ``A = S x R`` anchors per cell, of sides
``anchor_sizes[l] * anchor_scales`` (in input pixels, for aspect ratio 1) and aspect ratios ``aspect_ratios``
(height / width, same area), centred on the cells (:func:`mlcv.ops.anchors.multilevel_anchors`). They are
constants of the image size and the model's strides, built once in NumPy when a step is traced. Without the FPN
(``config.model.fpn = False``) every size of every level sits on the one level, ``A = L x S x R``.

Targets, built inside the jitted step from the padded boxes (:func:`anchor_targets`): each anchor is matched with
:func:`mlcv.ops.anchors.match`: IoU ``>= positive_iou`` (0.5) with a gt box is a positive of that box's class,
``< negative_iou`` (0.4) background (all ``K`` targets 0: class-wise sigmoids, no background class), in between
ignored. ``low_quality_matches`` (default True, as detectron2's and torchvision's RetinaNet; the paper does not
say) also makes each gt box's best anchors positive, so a digit that falls between anchors still trains one.

Loss (:func:`focal_loss`): ``FL(p_t) = -alpha_t (1 - p_t)^gamma log(p_t)`` for every class of every non-ignored
anchor, summed and divided by the number of positive anchors (at least 1), plus ``box_weight`` times the smooth
L1 (``box_beta``; 0 is L1) of the deltas ``encode(gt, anchor)`` over the positives, divided likewise. The batch
loss divides by the batch's positives (the paper normalises by the assigned anchors of the minibatch); the
per-image ``loss`` of :meth:`RetinaNetTask.predict` by the image's own.

Decoding (:func:`detect`): sigmoid scores of every (anchor, class) pair, the ``pre_nms_top_k`` best over all levels
and classes (departure: the paper keeps the 1000 best of each level; with ~1,700 anchors x 10 classes on a 96x96
scene one cut over all levels bounds the NMS matrix at ``k x k`` and keeps the same boxes in practice), those
above ``score_threshold`` (0.05) decoded and clipped to the image, class-aware NMS at ``nms_threshold`` (0.5)
keeping at most ``max_detections``.

Config keys under ``config.detection`` (all optional): ``anchor_sizes`` ((16, 32, 64): one per level of the model),
``anchor_scales`` ((1, 2^(1/3), 2^(2/3))), ``aspect_ratios`` ((0.5, 1, 2)), ``positive_iou`` (0.5),
``negative_iou`` (0.4), ``low_quality_matches`` (True), ``focal_gamma`` (2; 0 is the cross-entropy),
``focal_alpha`` (0.25; negative: no weighting), ``box_loss`` ("smooth_l1" or "l1"), ``box_beta`` (0.1),
``box_weight`` (1), ``nms_threshold`` (0.5), ``score_threshold`` (0.05), ``pre_nms_top_k`` (1000),
``max_detections`` (100).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from mlcv import models
from mlcv.config import ConfigError
from mlcv.models.retinanet import level_shapes
from mlcv.ops import anchors as anchor_ops
from mlcv.ops.box_coding import clip_boxes, decode, encode, smooth_l1
from mlcv.ops.nms import batched_nms, top_k
from mlcv.tasks.base import StepContext
from mlcv.tasks.detection import DetectionTask

_DEFAULTS: dict[str, Any] = {
    "anchor_sizes": (16.0, 32.0, 64.0),
    "anchor_scales": (1.0, 2 ** (1 / 3), 2 ** (2 / 3)),
    "aspect_ratios": (0.5, 1.0, 2.0),
    "positive_iou": 0.5,
    "negative_iou": 0.4,
    "low_quality_matches": True,
    "focal_gamma": 2.0,
    "focal_alpha": 0.25,
    "box_loss": "smooth_l1",
    "box_beta": 0.1,
    "box_weight": 1.0,
    "nms_threshold": 0.5,
    "score_threshold": 0.05,
    "pre_nms_top_k": 1000,
}


def focal_loss(logits: jax.Array, targets: jax.Array, gamma: float = 2.0, alpha: float = 0.25) -> jax.Array:
    """Elementwise focal loss ``-alpha_t (1 - p_t)^gamma log(p_t)`` of sigmoid ``logits`` against 0/1 ``targets``.

    ``p_t = p`` where the target is 1, ``1 - p`` where it is 0; ``alpha_t = alpha`` and ``1 - alpha`` likewise
    (``alpha < 0``: no weighting, as torchvision). ``gamma = 0`` and ``alpha < 0`` is the sigmoid cross-entropy;
    ``log(p_t)`` comes from ``optax.sigmoid_binary_cross_entropy`` (log-sigmoid), so no clamping of ``p`` is needed.
    """
    targets = targets.astype(logits.dtype)
    ce = optax.sigmoid_binary_cross_entropy(logits, targets)
    p = jax.nn.sigmoid(logits)
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce if gamma == 0 else ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss


def anchor_targets(
    anchors: jax.Array,
    boxes: jax.Array,
    labels: jax.Array,
    valid: jax.Array,
    num_classes: int,
    positive_iou: float = 0.5,
    negative_iou: float = 0.4,
    low_quality: bool = True,
) -> dict[str, jax.Array]:
    """Per anchor of each image: ``classes [B, N, K]`` (one-hot, all 0 for background), ``deltas [B, N, 4]``,
    ``positive [B, N]`` and ``counted [B, N]`` (not ignored), from ``anchors [N, 4]`` and boxes ``[B, M, 4]``,
    labels ``[B, M]``, valid ``[B, M]``; deltas of non-positives are 0.
    """
    match = jax.vmap(lambda b, v: anchor_ops.match(anchors, b, v, positive_iou, negative_iou, low_quality))
    index = match(boxes, valid)  # [B, N]
    positive = index >= 0
    safe = jnp.maximum(index, 0)
    gt = jnp.take_along_axis(boxes, safe[..., None], axis=1)  # [B, N, 4]
    gt_label = jnp.take_along_axis(labels, safe, axis=1)
    classes = jax.nn.one_hot(gt_label, num_classes) * positive[..., None]
    deltas = jnp.where(positive[..., None], encode(gt, anchors[None]), 0.0)
    return {
        "classes": classes,
        "deltas": deltas,
        "positive": positive.astype(jnp.float32),
        "counted": (index != anchor_ops.IGNORED).astype(jnp.float32),
    }


def detect(
    probs: jax.Array,
    deltas: jax.Array,
    anchors: jax.Array,
    image_shape: Sequence[int],
    max_detections: int,
    nms_threshold: float = 0.5,
    score_threshold: float = 0.05,
    pre_nms_top_k: int = 1000,
) -> dict[str, jax.Array]:
    """Detections of class probabilities ``[B, N, K]`` and deltas ``[B, N, 4]`` on ``anchors [N, 4]``.

    The ``pre_nms_top_k`` best (anchor, class) scores of each image, decoded and clipped to ``image_shape``
    ``(H, W)``, then class-aware NMS; returns the ``det_*`` keys of :mod:`mlcv.tasks.detection`, ``K =
    max_detections`` rows by decreasing score (padding rows: mask 0, score 0, class 0, box 0).
    """
    b, n, k = probs.shape
    scores, flat, ok = top_k(probs.reshape(b, n * k), pre_nms_top_k)
    flat = jnp.maximum(flat, 0)
    anchor_index, classes = flat // k, (flat % k).astype(jnp.int32)
    d = jnp.take_along_axis(deltas, anchor_index[..., None], axis=1)
    boxes = clip_boxes(decode(d, anchors[anchor_index]), image_shape[0], image_shape[1])
    scores = jnp.where(ok, scores, 0.0)
    keep, mask = batched_nms(boxes, scores, classes, nms_threshold, max_detections, score_threshold, ok)
    at = jnp.maximum(keep, 0)
    take = lambda x: jnp.take_along_axis(x, at if x.ndim == 2 else at[..., None], axis=1)  # noqa: E731
    return {
        "det_boxes": jnp.where(mask[..., None], take(boxes), 0.0),
        "det_scores": jnp.where(mask, take(scores), 0.0),
        "det_classes": jnp.where(mask, take(classes), 0).astype(jnp.int32),
        "det_mask": mask.astype(jnp.float32),
    }


@functools.lru_cache(maxsize=16)
def _anchors(
    image_shape: tuple[int, int], strides: tuple[int, ...], sizes: tuple[tuple[float, ...], ...], ratios: tuple
) -> np.ndarray:
    """The anchors of the levels, NumPy (a constant of the traced step), cached by its arguments."""
    shapes = level_shapes(image_shape, strides)
    with jax.ensure_compile_time_eval():  # called while a step is traced: concrete values, not tracers
        return np.asarray(anchor_ops.multilevel_anchors(shapes, strides, sizes, ratios))


class RetinaNetTask(DetectionTask):
    """Focal loss on the anchors of a feature pyramid, class-aware NMS (see the module docstring)."""

    def __init__(self, config: ml_collections.ConfigDict, meta: Any, runs: Sequence[Any] = ()):
        det = config.get("detection") or {}
        self.options = {k: det.get(k, v) for k, v in _DEFAULTS.items()}
        o = self.options
        if o["box_loss"] not in ("smooth_l1", "l1"):
            raise ConfigError(f"config.detection.box_loss must be 'smooth_l1' or 'l1', got {o['box_loss']!r}")
        if not 0 < o["negative_iou"] <= o["positive_iou"] <= 1:
            raise ConfigError("config.detection needs 0 < negative_iou <= positive_iou <= 1")
        super().__init__(config, meta, runs)

    def build_model(self) -> nn.Module:
        """``config.model`` (a RetinaNet) with ``num_classes`` from the dataset and ``A`` anchors per cell."""
        probe = models.from_config(self.config.model, num_classes=self.num_classes)
        o = self.options
        base = tuple(float(s) for s in o["anchor_sizes"])
        scales = tuple(float(s) for s in o["anchor_scales"])
        fpn_levels = len(tuple(range(probe.min_level, probe.max_level + 1)))
        if len(base) != fpn_levels:
            raise ConfigError(
                f"config.detection.anchor_sizes {base} needs one size per level {probe.min_level}..{probe.max_level}"
            )
        per_size = [tuple(s * c for c in scales) for s in base]
        # Without the pyramid every size goes to the one level.
        self.anchor_sizes = tuple(per_size) if probe.fpn else (tuple(s for level in per_size for s in level),)
        self.aspect_ratios = tuple(float(r) for r in o["aspect_ratios"])
        self.strides = probe.strides
        return probe.clone(num_anchors=len(self.anchor_sizes[0]) * len(self.aspect_ratios))

    def anchors(self, image_shape: Sequence[int]) -> jax.Array:
        """The anchors ``[N, 4]`` of an ``(H, W)`` input, in the order of the model's outputs."""
        shape = (int(image_shape[0]), int(image_shape[1]))
        return jnp.asarray(_anchors(shape, self.strides, self.anchor_sizes, self.aspect_ratios))

    def _terms(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """Per-image sums ``[B]`` of the focal and box losses and the number of positive anchors."""
        o = self.options
        anchors = self.anchors(batch["image"].shape[1:3])
        t = anchor_targets(
            anchors,
            batch["boxes"].astype(jnp.float32),
            batch["box_labels"].astype(jnp.int32),
            batch["box_mask"],
            self.num_classes,
            o["positive_iou"],
            o["negative_iou"],
            bool(o["low_quality_matches"]),
        )
        fl = focal_loss(outputs["class_logits"], t["classes"], float(o["focal_gamma"]), float(o["focal_alpha"]))
        beta = float(o["box_beta"]) if o["box_loss"] == "smooth_l1" else 0.0
        box = jnp.sum(smooth_l1(outputs["box_deltas"] - t["deltas"], beta), axis=-1)
        return {
            "focal": jnp.sum(fl * t["counted"][..., None], axis=(1, 2)),
            "box": jnp.sum(box * t["positive"], axis=1),
            "positives": jnp.sum(t["positive"], axis=1),
        }

    def _weighted(self, terms: Mapping[str, jax.Array], positives: jax.Array) -> dict[str, jax.Array]:
        n = jnp.maximum(positives, 1.0)
        return {"focal": terms["focal"] / n, "box": float(self.options["box_weight"]) * terms["box"] / n}

    def losses(
        self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array], context: StepContext
    ) -> dict[str, jax.Array]:
        """The focal and box terms, each summed over the batch and divided by its positive anchors (at least 1)."""
        del context
        terms = self._terms(outputs, batch)
        return self._weighted({k: jnp.sum(v) for k, v in terms.items()}, jnp.sum(terms["positives"]))

    def train_metrics(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """The mean number of positive anchors an image, and the boxes beyond the padding."""
        positives = jnp.mean(self._terms(outputs, batch)["positives"])
        return {**super().train_metrics(outputs, batch), "positives": positives}

    def predict(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """Detections, the heads (for ensembles) and each image's loss over its own positive anchors."""
        terms = self._terms(outputs, batch)
        loss = sum(self._weighted(terms, terms["positives"]).values())
        probs = jax.nn.sigmoid(outputs["class_logits"])
        deltas = outputs["box_deltas"]
        return {**self._detect(probs, deltas, batch), "class_probs": probs, "box_deltas": deltas, "loss": loss}

    def _detect(self, probs: jax.Array, deltas: jax.Array, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        o = self.options
        image_shape = batch["image"].shape[1:3]
        return detect(
            probs,
            deltas,
            self.anchors(image_shape),
            image_shape,
            self.max_detections,
            float(o["nms_threshold"]),
            float(o["score_threshold"]),
            int(o["pre_nms_top_k"]),
        )

    def combine(self, predictions: Sequence[Mapping[str, jax.Array]], batch: Mapping[str, jax.Array]) -> dict:
        """Averages the members' class probabilities and box deltas, then decodes and suppresses once."""
        mean = {k: jnp.mean(jnp.stack([p[k] for p in predictions]), axis=0) for k in ("class_probs", "box_deltas")}
        out = self._detect(mean["class_probs"], mean["box_deltas"], batch)
        return {**out, **mean, "loss": jnp.mean(jnp.stack([p["loss"] for p in predictions]), axis=0)}

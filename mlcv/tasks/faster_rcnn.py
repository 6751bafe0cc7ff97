"""Faster R-CNN with FPN (Ren et al. 2015; Lin et al. 2017): RPN proposals, RoI sampling, the two losses (§10.2).

:meth:`FasterRCNNTask.apply` runs the two stages of :class:`mlcv.models.faster_rcnn.FasterRCNN` with the proposals
between them, all inside the jitted step with static shapes:

1. Stage one: pyramid ``P2..P5``, RPN logits and deltas on the anchors of every level (one size a level,
   ``anchor_sizes`` (16, 32, 64, 128) px = 4x the stride, x ``aspect_ratios`` (0.5, 1, 2): 2,295 anchors on a
   96x96 scene; 99 % of the digits have one at IoU >= 0.5, 37 % at >= 0.7).
2. RPN targets (:func:`rpn_targets`): :func:`mlcv.ops.anchors.match` at 0.7 / 0.3 with each gt box's best
   anchors positive, then :func:`mlcv.ops.anchors.sample_balanced`: 256 anchors an image, at most half positive.
3. Proposals (:func:`propose`): the ``pre_nms_top_k`` best anchors by objectness over all levels, decoded,
   clipped to the image, sides under ``rpn_min_size`` dropped, NMS at 0.7 keeping ``post_nms_top_k``; under
   ``stop_gradient`` (the paper's approximate joint training: no gradient through the proposal coordinates).
   The paper keeps 2000 (training) / 1000 (test) proposals of ~20,000 anchors (~10 %); with 2,295 anchors
   and at most 6 digits this is scaled to 1000 -> 256 (training) and 500 -> 128 (test).
4. Training RoIs (:func:`roi_targets`): the proposals plus the gt boxes, matched at IoU >= 0.5 (foreground, the
   class of the box) or in ``[0, 0.5)`` (background), 128 sampled an image with at most 25 % foreground, and
   gathered into ``roi_batch_size`` rows (padding rows carry no loss). The sampling key is the step's
   ``dropout`` key, which :class:`mlcv.training.steps.StepBuilder` derives from the run's seed and the step
   (``fold_in(state.rng, step)``): one key for the RPN's anchors, one for the RoIs. Evaluation draws the same
   kind of sample with the fixed key 0 among the proposals alone (no gt appended), for the per-image loss
   only; the detections use every proposal.
5. Stage two on the RoIs: ``K + 1`` logits, **class 0 the background**, object class ``c`` (the dataset's
   ``c - 1``) at ``c``, as torchvision and py-faster-rcnn (detectron2 puts the background last), and ``4K``
   deltas, row ``c - 1`` for class ``c``. Its targets ``encode(gt, roi, (10, 10, 5, 5))``: the weights of
   detectron and torchvision, which make the deltas of proposals near their box roughly unit-variance.

Losses (course eqs. 49-54): ``rpn_objectness``, the sigmoid cross-entropy of the sampled anchors, and
``rpn_box``, the smooth L1 (``beta = 1/9``, py-faster-rcnn's ``sigma = 3``) of the positives' deltas, both
divided by the number of sampled anchors; ``roi_class``, the softmax cross-entropy of the sampled RoIs, and
``roi_box``, the smooth L1 (``beta = 1``, Fast R-CNN) of the gt class's deltas of the foreground RoIs, both
divided by the number of sampled RoIs. Departure: the paper divides the RPN's box term by the ~2,400 anchor
locations and weights it by ``lambda = 10``; dividing by the 256 sampled anchors is about the same weight
(torchvision and detectron2 do the same). The batch terms divide by the batch's samples, the per-image
``loss`` of :meth:`FasterRCNNTask.predict` by the image's own.

Decoding (:func:`detect`): softmax over the ``K + 1`` classes, every proposal decoded with every object class's
deltas and clipped, the ``pre_nms_top_k`` best (proposal, class) pairs above ``score_threshold`` (0.05),
class-aware NMS at 0.5, at most ``max_detections``. Ensembles (:meth:`FasterRCNNTask.combine`): members
propose different RoIs, so their probabilities and deltas cannot be averaged RoI by RoI; their detections are
pooled and suppressed again by class-aware NMS at ``nms_threshold``, keeping the ``max_detections`` best.

Config keys under ``config.detection`` (all optional): those of ``_DEFAULTS`` below, named as above
(``rpn_*`` the first stage, ``roi_*`` the second, ``*_train`` / ``*_test`` the proposal counts), and
``max_detections``.
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
from mlcv.ops.box_coding import clip_boxes, decode, encode, iou_matrix, smooth_l1
from mlcv.ops.nms import batched_nms, nms, top_k
from mlcv.tasks.base import StepContext
from mlcv.tasks.detection import DETECTION_KEYS, DetectionTask

_DEFAULTS: dict[str, Any] = {
    "anchor_sizes": (16.0, 32.0, 64.0, 128.0),
    "aspect_ratios": (0.5, 1.0, 2.0),
    "rpn_positive_iou": 0.7,
    "rpn_negative_iou": 0.3,
    "rpn_batch_size": 256,
    "rpn_positive_fraction": 0.5,
    "rpn_nms_threshold": 0.7,
    "rpn_min_size": 1.0,
    "pre_nms_top_k_train": 1000,
    "post_nms_top_k_train": 256,
    "pre_nms_top_k_test": 500,
    "post_nms_top_k_test": 128,
    "roi_batch_size": 128,
    "roi_positive_fraction": 0.25,
    "roi_foreground_iou": 0.5,
    "roi_background_iou": 0.5,
    "box_weights": (10.0, 10.0, 5.0, 5.0),
    "rpn_box_beta": 1 / 9,
    "roi_box_beta": 1.0,
    "nms_threshold": 0.5,
    "score_threshold": 0.05,
    "pre_nms_top_k": 1000,
}


def _take(x: jax.Array, index: jax.Array) -> jax.Array:
    """Rows ``index [B, R]`` of ``x [B, N, ...]`` along axis 1."""
    return jnp.take_along_axis(x, index.reshape(index.shape + (1,) * (x.ndim - 2)), axis=1)


def rpn_targets(
    anchors: jax.Array,
    boxes: jax.Array,
    valid: jax.Array,
    key: jax.Array,
    num_samples: int = 256,
    positive_fraction: float = 0.5,
    positive_iou: float = 0.7,
    negative_iou: float = 0.3,
) -> dict[str, jax.Array]:
    """The RPN's sampled anchors: ``labels [B, N]`` (1 sampled positive, 0 sampled negative, -1 not in the loss)
    and ``deltas [B, N, 4]`` (``encode(gt, anchor)`` at positives, else 0), from ``anchors [N, 4]``, boxes
    ``[B, M, 4]`` and their ``valid [B, M]`` mask; ``key`` draws each image's sample.
    """
    index = jax.vmap(lambda b, v: anchor_ops.match(anchors, b, v, positive_iou, negative_iou, True))(boxes, valid)
    kind = jnp.where(index >= 0, 1, jnp.where(index == anchor_ops.NEGATIVE, 0, -1))
    keys = jax.random.split(key, boxes.shape[0])
    sampled = jax.vmap(lambda k, lab: anchor_ops.sample_balanced(k, lab, num_samples, positive_fraction))(keys, kind)
    positive = sampled & (kind == 1)
    gt = _take(boxes, jnp.maximum(index, 0))
    return {
        "labels": jnp.where(sampled, kind, -1).astype(jnp.int32),
        "deltas": jnp.where(positive[..., None], encode(gt, anchors[None]), 0.0),
    }


def propose(
    logits: jax.Array,
    deltas: jax.Array,
    anchors: jax.Array,
    image_shape: Sequence[int],
    pre_nms_top_k: int,
    post_nms_top_k: int,
    nms_threshold: float = 0.7,
    min_size: float = 0.0,
) -> tuple[jax.Array, jax.Array]:
    """Proposals ``[B, post_nms_top_k, 4]`` and their mask of RPN ``logits [B, N]`` and ``deltas [B, N, 4]``.

    The ``pre_nms_top_k`` best anchors by objectness, decoded, clipped to ``image_shape`` ``(H, W)``, those
    with a side under ``min_size`` dropped, then greedy NMS at ``nms_threshold`` keeping at most
    ``post_nms_top_k``, by decreasing objectness (padding rows: zeros, mask False).
    """

    def one(lg: jax.Array, d: jax.Array) -> tuple[jax.Array, jax.Array]:
        scores, index, ok = top_k(lg, pre_nms_top_k)
        index = jnp.maximum(index, 0)
        boxes = clip_boxes(decode(d[index], anchors[index]), image_shape[0], image_shape[1])
        ok &= jnp.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= min_size
        keep, mask = nms(boxes, jnp.where(ok, scores, 0.0), nms_threshold, post_nms_top_k, valid=ok)
        return jnp.where(mask[:, None], boxes[jnp.maximum(keep, 0)], 0.0), mask

    return jax.vmap(one)(logits, deltas)


def roi_targets(
    rois: jax.Array,
    roi_valid: jax.Array,
    boxes: jax.Array,
    labels: jax.Array,
    valid: jax.Array,
    key: jax.Array,
    num_samples: int = 128,
    positive_fraction: float = 0.25,
    foreground_iou: float = 0.5,
    background_iou: float = 0.5,
    weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0),
) -> dict[str, jax.Array]:
    """Second-stage targets of ``rois [B, R, 4]`` (``roi_valid [B, R]``) against boxes ``[B, M, 4]``.

    IoU ``>= foreground_iou`` with a gt box: foreground of that box's class; ``< background_iou``: background;
    in between: neither. Returns ``classes [B, R]`` int32 (the dataset's label + 1, 0 for background and for
    RoIs not sampled), ``deltas [B, R, 4]`` (``encode(gt, roi, weights)`` at foreground RoIs, else 0) and
    ``sampled [B, R]`` (``num_samples`` an image, at most ``positive_fraction`` foreground, by ``key``).
    """
    match = jax.vmap(lambda r, b, v: anchor_ops.match(r, b, v, foreground_iou, background_iou, False))
    index = match(rois, boxes, valid)
    valid_roi = roi_valid > 0
    kind = jnp.where(valid_roi & (index >= 0), 1, jnp.where(valid_roi & (index == anchor_ops.NEGATIVE), 0, -1))
    keys = jax.random.split(key, rois.shape[0])
    sampled = jax.vmap(lambda k, lab: anchor_ops.sample_balanced(k, lab, num_samples, positive_fraction))(keys, kind)
    foreground = sampled & (kind == 1)
    safe = jnp.maximum(index, 0)
    classes = jnp.where(foreground, jnp.take_along_axis(labels, safe, axis=1) + 1, 0).astype(jnp.int32)
    deltas = jnp.where(foreground[..., None], encode(_take(boxes, safe), rois, weights), 0.0)
    return {"classes": classes, "deltas": deltas, "sampled": sampled}


def gather_sampled(sampled: jax.Array, count: int) -> tuple[jax.Array, jax.Array]:
    """The indices ``[B, count]`` of the sampled rows of each image, in index order, and their mask."""
    _, index, mask = top_k(sampled.astype(jnp.float32), count, sampled)
    return jnp.maximum(index, 0), mask


def detect(
    class_logits: jax.Array,
    box_deltas: jax.Array,
    rois: jax.Array,
    roi_valid: jax.Array,
    image_shape: Sequence[int],
    max_detections: int,
    nms_threshold: float = 0.5,
    score_threshold: float = 0.05,
    pre_nms_top_k: int = 1000,
    weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0),
) -> dict[str, jax.Array]:
    """Detections of ``class_logits [B, R, K + 1]`` and ``box_deltas [B, R, K, 4]`` on ``rois [B, R, 4]``.

    Each valid RoI and object class ``c`` gives a box (the RoI decoded by class ``c``'s deltas, clipped to
    ``image_shape``) scored by the softmax probability of ``c``; the ``pre_nms_top_k`` best pairs, those above
    ``score_threshold``, class-aware NMS at ``nms_threshold``: the ``det_*`` keys of :mod:`mlcv.tasks.detection`
    with dataset classes ``c - 1``, by decreasing score (padding rows 0).
    """
    b, r, k = box_deltas.shape[:3]
    probs = jax.nn.softmax(class_logits, axis=-1)[..., 1:]
    boxes = clip_boxes(decode(box_deltas, rois[:, :, None, :], weights), image_shape[0], image_shape[1])
    valid = jnp.broadcast_to((roi_valid > 0)[..., None], (b, r, k)).reshape(b, r * k)
    scores, flat, ok = top_k(probs.reshape(b, r * k), pre_nms_top_k, valid)
    flat = jnp.maximum(flat, 0)
    boxes = _take(boxes.reshape(b, r * k, 4), flat)
    classes = (flat % k).astype(jnp.int32)
    return _suppress(boxes, jnp.where(ok, scores, 0.0), classes, ok, max_detections, nms_threshold, score_threshold)


def _suppress(boxes, scores, classes, valid, max_detections, nms_threshold, score_threshold=-jnp.inf) -> dict:
    """Class-aware NMS of candidate detections ``[B, N]``: the ``det_*`` keys, ``max_detections`` rows."""
    keep, mask = batched_nms(boxes, scores, classes, nms_threshold, max_detections, score_threshold, valid)
    at = jnp.maximum(keep, 0)
    return {
        "det_boxes": jnp.where(mask[..., None], _take(boxes, at), 0.0),
        "det_scores": jnp.where(mask, _take(scores, at), 0.0),
        "det_classes": jnp.where(mask, _take(classes, at), 0).astype(jnp.int32),
        "det_mask": mask.astype(jnp.float32),
    }


@functools.lru_cache(maxsize=16)
def _anchors(image_shape: tuple[int, int], strides: tuple[int, ...], sizes: tuple, ratios: tuple) -> np.ndarray:
    """The anchors of the levels, NumPy (a constant of the traced step), cached by its arguments."""
    with jax.ensure_compile_time_eval():  # called while a step is traced: concrete values, not tracers
        return np.asarray(anchor_ops.multilevel_anchors(level_shapes(image_shape, strides), strides, sizes, ratios))


class FasterRCNNTask(DetectionTask):
    """RPN, proposals, RoI sampling and the box head's losses; see the module docstring."""

    def __init__(self, config: ml_collections.ConfigDict, meta: Any, runs: Sequence[Any] = ()):
        det = config.get("detection") or {}
        self.options = o = {k: det.get(k, v) for k, v in _DEFAULTS.items()}
        if not 0 < o["rpn_negative_iou"] <= o["rpn_positive_iou"] <= 1:
            raise ConfigError("config.detection needs 0 < rpn_negative_iou <= rpn_positive_iou <= 1")
        if not 0 < o["roi_background_iou"] <= o["roi_foreground_iou"] <= 1:
            raise ConfigError("config.detection needs 0 < roi_background_iou <= roi_foreground_iou <= 1")
        for key in ("rpn_positive_fraction", "roi_positive_fraction"):
            if not 0 < o[key] <= 1:
                raise ConfigError(f"config.detection.{key} must be in (0, 1], got {o[key]}")
        for mode in ("train", "test"):
            pre, post = o[f"pre_nms_top_k_{mode}"], o[f"post_nms_top_k_{mode}"]
            if not 1 <= post <= pre:
                raise ConfigError(f"config.detection needs 1 <= post_nms_top_k_{mode} <= pre_nms_top_k_{mode}")
        if len(o["box_weights"]) != 4:
            raise ConfigError(f"config.detection.box_weights needs 4 numbers, got {o['box_weights']}")
        super().__init__(config, meta, runs)

    def build_model(self) -> nn.Module:
        """``config.model`` (a Faster R-CNN) with ``num_classes`` from the dataset and ``k`` anchors a location."""
        probe = models.from_config(self.config.model, num_classes=self.num_classes)
        sizes = tuple(float(s) for s in self.options["anchor_sizes"])
        if len(sizes) != len(probe.levels):
            raise ConfigError(
                f"config.detection.anchor_sizes {sizes} needs one size per level {probe.min_level}..{probe.max_level}"
            )
        self.anchor_sizes, self.strides = sizes, probe.strides
        self.aspect_ratios = tuple(float(r) for r in self.options["aspect_ratios"])
        return probe.clone(num_anchors=len(self.aspect_ratios))

    def anchors(self, image_shape: Sequence[int]) -> jax.Array:
        """The anchors ``[N, 4]`` of an ``(H, W)`` input, in the order of the RPN's outputs."""
        shape = (int(image_shape[0]), int(image_shape[1]))
        return jnp.asarray(_anchors(shape, self.strides, self.anchor_sizes, self.aspect_ratios))

    def apply(self, variables: Mapping[str, Any], batch: Mapping[str, jax.Array], **kwargs: Any) -> Any:
        """Both stages with proposals and targets between them (see the module docstring).

        ``kwargs`` as :meth:`mlcv.tasks.base.Task.apply`: ``train``, ``mutable`` (the batch statistics of the
        backbone, returned as ``(outputs, updates)``) and ``rngs`` (its ``dropout`` key draws the samples).
        """
        o, train, mutable = self.options, bool(kwargs.get("train", False)), kwargs.get("mutable", False)
        stage1 = self.model.apply(variables, batch["image"], train=train, mutable=mutable, method="rpn")
        stage1, updates = stage1 if mutable else (stage1, None)
        image_shape = batch["image"].shape[1:3]
        anchors = self.anchors(image_shape)
        mode = "train" if train else "test"
        # The approximate joint training of the paper: no gradient through the proposals' coordinates.
        proposals, proposal_mask = propose(
            jax.lax.stop_gradient(stage1["rpn_logits"]), jax.lax.stop_gradient(stage1["rpn_deltas"]), anchors,
            image_shape, int(o[f"pre_nms_top_k_{mode}"]), int(o[f"post_nms_top_k_{mode}"]),
            float(o["rpn_nms_threshold"]), float(o["rpn_min_size"]),
        )  # fmt: skip
        key = (kwargs.get("rngs") or {}).get("dropout") if train else None
        rpn_key, roi_key = jax.random.split(jax.random.key(0) if key is None else key)
        boxes, labels, valid = batch["boxes"].astype(jnp.float32), batch["box_labels"], batch["box_mask"]
        rpn = rpn_targets(
            anchors, boxes, valid, rpn_key, int(o["rpn_batch_size"]), float(o["rpn_positive_fraction"]),
            float(o["rpn_positive_iou"]), float(o["rpn_negative_iou"]),
        )  # fmt: skip
        rois, roi_valid = proposals, proposal_mask
        if train:  # the gt boxes are RoIs too, so every object has foreground RoIs from the first step
            rois = jnp.concatenate([proposals, boxes], axis=1)
            roi_valid = jnp.concatenate([proposal_mask, valid > 0], axis=1)
        t = roi_targets(
            rois, roi_valid, boxes, labels.astype(jnp.int32), valid, roi_key, int(o["roi_batch_size"]),
            float(o["roi_positive_fraction"]), float(o["roi_foreground_iou"]), float(o["roi_background_iou"]),
            tuple(o["box_weights"]),
        )  # fmt: skip
        if train:  # the head runs on the sampled RoIs only
            index, ok = gather_sampled(t["sampled"], int(o["roi_batch_size"]))
            rois, roi_valid = _take(rois, index), ok
            t = {"classes": _take(t["classes"], index), "deltas": _take(t["deltas"], index), "sampled": ok}
        head = self.model.apply({"params": variables["params"]}, stage1["pyramid"], rois, method="roi_head")
        outputs = {
            **{k: stage1[k] for k in ("rpn_logits", "rpn_deltas")},
            **{"rpn_labels": rpn["labels"], "rpn_targets": rpn["deltas"]},
            **{"proposals": proposals, "proposal_mask": proposal_mask, "rois": rois, "roi_valid": roi_valid},
            **{"roi_classes": t["classes"], "roi_targets": t["deltas"], "roi_sampled": t["sampled"]},
            **head,
        }
        outputs |= self.extra_outputs(variables["params"], stage1["pyramid"], outputs, batch, train)
        return (outputs, updates) if mutable else outputs

    def extra_outputs(self, params: Any, pyramid: Any, outputs: dict, batch: Mapping, train: bool) -> dict:
        """A subclass's outputs from the ``pyramid`` and the two stages' ``outputs`` (Mask R-CNN's masks): none."""
        del params, pyramid, outputs, batch, train
        return {}

    def _terms(self, outputs: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """Per-image loss sums ``[B]`` and the sampled counts they divide by."""
        o = self.options
        rpn_labels = outputs["rpn_labels"].astype(jnp.int32)  # the step casts every output to float32
        rpn_sampled, rpn_positive = rpn_labels >= 0, rpn_labels == 1
        bce = optax.sigmoid_binary_cross_entropy(outputs["rpn_logits"], rpn_positive.astype(jnp.float32))
        rpn_box = jnp.sum(smooth_l1(outputs["rpn_deltas"] - outputs["rpn_targets"], float(o["rpn_box_beta"])), -1)
        classes = outputs["roi_classes"].astype(jnp.int32)
        roi_sampled = outputs["roi_sampled"] > 0
        ce = optax.softmax_cross_entropy_with_integer_labels(outputs["class_logits"], classes)
        # The deltas of the gt class (row c - 1); background RoIs have no box target.
        row = jnp.maximum(classes - 1, 0)[..., None, None]
        own = jnp.take_along_axis(outputs["box_deltas"], row, axis=2)[..., 0, :]
        roi_box = jnp.sum(smooth_l1(own - outputs["roi_targets"], float(o["roi_box_beta"])), -1)
        foreground = roi_sampled & (classes > 0)
        return {
            "rpn_objectness": jnp.sum(bce * rpn_sampled, 1),
            "rpn_box": jnp.sum(rpn_box * rpn_positive, 1),
            "roi_class": jnp.sum(ce * roi_sampled, 1),
            "roi_box": jnp.sum(roi_box * foreground, 1),
            "rpn_count": jnp.sum(rpn_sampled, 1).astype(jnp.float32),
            "roi_count": jnp.sum(roi_sampled, 1).astype(jnp.float32),
        }

    @staticmethod
    def _normalised(terms: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        rpn, roi = jnp.maximum(terms["rpn_count"], 1.0), jnp.maximum(terms["roi_count"], 1.0)
        names = ("rpn_objectness", "rpn_box", "roi_class", "roi_box")
        return {k: terms[k] / (rpn if k.startswith("rpn") else roi) for k in names}

    def losses(
        self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array], context: StepContext
    ) -> dict[str, jax.Array]:
        """The four terms, each summed over the batch and divided by the batch's sampled anchors or RoIs."""
        del batch, context  # the targets came with the outputs (apply drew the samples)
        return self._normalised({k: jnp.sum(v) for k, v in self._terms(outputs).items()})

    def train_metrics(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """Per image: sampled positive anchors, foreground RoIs, and the gt boxes with a proposal at IoU >= 0.5."""
        iou = iou_matrix(outputs["proposals"], batch["boxes"].astype(jnp.float32))
        iou = jnp.where(outputs["proposal_mask"][..., None] > 0, iou, 0.0)
        found = (iou.max(axis=1) >= 0.5) * batch["box_mask"]
        return {
            **super().train_metrics(outputs, batch),
            "rpn_positives": jnp.mean(jnp.sum(outputs["rpn_labels"] == 1, 1).astype(jnp.float32)),
            "roi_foreground": jnp.mean(jnp.sum((outputs["roi_classes"] > 0) * outputs["roi_sampled"], 1)),
            "proposal_recall": jnp.sum(found) / jnp.maximum(jnp.sum(batch["box_mask"]), 1.0),
        }

    def predict(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """Detections of every proposal, and each image's loss over its own (fixed-key) samples."""
        o = self.options
        det = detect(
            outputs["class_logits"], outputs["box_deltas"], outputs["rois"], outputs["roi_valid"],
            batch["image"].shape[1:3], self.max_detections, float(o["nms_threshold"]),
            float(o["score_threshold"]), int(o["pre_nms_top_k"]), tuple(o["box_weights"]),
        )  # fmt: skip
        return {**det, "loss": sum(self._normalised(self._terms(outputs)).values())}

    def combine(self, predictions: Sequence[Mapping[str, jax.Array]], batch: Mapping[str, jax.Array]) -> dict:
        """The members' detections pooled and suppressed again (class-aware NMS), the ``max_detections`` best."""
        del batch
        cat = {k: jnp.concatenate([p[k] for p in predictions], axis=1) for k in DETECTION_KEYS}
        boxes, scores, classes, valid = (cat[k] for k in DETECTION_KEYS)
        out = _suppress(boxes, scores, classes, valid > 0, self.max_detections, float(self.options["nms_threshold"]))
        return {**out, "loss": jnp.mean(jnp.stack([p["loss"] for p in predictions]), axis=0)}

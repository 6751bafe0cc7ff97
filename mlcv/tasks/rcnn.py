"""R-CNN (Girshick et al. 2014) and Fast R-CNN (Girshick 2015): classify and refine region proposals (course §10.2).

Both detectors score the regions of a proposal method (the ``selective_search(n)`` op writes ``proposals``
``[B, P, 4]`` in pixels of the input image and ``proposal_mask`` ``[B, P]``); they differ in their network only
(:mod:`mlcv.models.rcnn`: context, warp and the CNN for every region; :mod:`mlcv.models.fast_rcnn`: the CNN once,
RoIPool of every region). What this module holds is what they share: which regions train the heads, their
targets, the loss and the decoding.

Regions and labels (:func:`label_rois`, per image). In training the regions are the proposals plus the image's
ground-truth boxes (Fast R-CNN's and Faster R-CNN's practice: every object then has at least one perfect
positive). Each is labelled by its highest IoU with a ground-truth box: ``>= foreground_iou`` (0.5) is that
box's class ``1..K`` (class 0 is background), ``[background_iou_low, foreground_iou)`` (``[0.1, 0.5)``, as Fast
R-CNN) is background, lower is left out (Fast R-CNN's lower bound is a heuristic of hard example mining).
R-CNN's own thresholds differ by stage: fine-tuning the CNN takes ``>= 0.5`` as positive and every other
proposal as background (``background_iou_low = 0``); its per-class SVMs then take only the ground-truth boxes as
positives and proposals below 0.3 as negatives, and its box regressor learns from proposals above 0.6. An image
without objects: every region has IoU 0, background with ``background_iou_low = 0``, left out otherwise.

Sampling (:func:`sample_rois`): ``rois_per_image`` (64, as Fast R-CNN's 128 RoIs from 2 images) by
:func:`mlcv.ops.anchors.sample_balanced`, at most ``foreground_fraction`` (25 %) foreground, background filling the
rest. The key is drawn inside the jitted step from the one the step gives the forward pass (``rngs["dropout"]``,
i.e. ``fold_in(state.rng, step)``: the same seed and step give the same regions, so a resumed run samples as an
uninterrupted one). :class:`mlcv.tasks.base.StepContext` holds no key and reaches only the losses, while the
regions must be chosen before the forward pass: hence :meth:`RoIHeadTask.apply` samples and passes the labels on
in the outputs. Only the sampled regions go through the network.

Loss (:meth:`RoIHeadTask.losses`, Fast R-CNN's multi-task loss): softmax cross-entropy over the ``K + 1``
classes, plus ``box_weight`` (lambda, 1) times the smooth L1 (``box_beta`` 1; course eq. 54) of the deltas of
the region's ground-truth class ``u`` (class-specific regression, only for ``u >= 1``) against
``encode(gt, region, box_weights)`` (eqs. 49-53), both summed over the sampled regions of the batch and divided
by their number. ``box_weights`` (10, 10, 5, 5) stand for Fast R-CNN's normalisation of the targets to unit
variance (the constants of its successors' code); ``box_loss = "l2"`` is R-CNN's squared error instead.

Evaluation (:meth:`RoIHeadTask.predict`): the network sees the proposals only (no ground truth). Each proposal
gets the softmax probability of every object class and, per class, its own decoded box (clipped to the image);
the ``pre_nms_top_k`` best (proposal, class) pairs above ``score_threshold`` (0.05) go through class-aware NMS
(``nms_threshold`` 0.5; the papers' 0.3) and at most ``max_detections`` remain: the ``det_*`` keys of
:mod:`mlcv.tasks.detection`. Each image's ``loss`` is the training loss on a balanced sample of its labelled
proposals drawn with a fixed key, so that evaluations compare. Ensembles (:meth:`RoIHeadTask.combine`) average
the members' probabilities and deltas per proposal, then decode once.

Config keys under ``config.detection`` (all optional): ``foreground_iou`` (0.5), ``background_iou_low`` (0.1),
``rois_per_image`` (64), ``foreground_fraction`` (0.25), ``box_weights`` ((10, 10, 5, 5)), ``box_loss``
("smooth_l1" or "l2"), ``box_beta`` (1), ``box_weight`` (1), ``nms_threshold`` (0.5), ``score_threshold``
(0.05), ``pre_nms_top_k`` (1000), ``max_detections`` (100).
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
from mlcv.models.fast_rcnn import FastRCNN
from mlcv.models.rcnn import RCNN
from mlcv.ops.anchors import sample_balanced
from mlcv.ops.box_coding import clip_boxes, decode, encode, iou_matrix, l2, smooth_l1
from mlcv.ops.nms import batched_nms, top_k
from mlcv.tasks.base import StepContext
from mlcv.tasks.detection import DetectionTask

_DEFAULTS: dict[str, Any] = {
    "foreground_iou": 0.5,
    "background_iou_low": 0.1,
    "rois_per_image": 64,
    "foreground_fraction": 0.25,
    "box_weights": (10.0, 10.0, 5.0, 5.0),
    "box_loss": "smooth_l1",
    "box_beta": 1.0,
    "box_weight": 1.0,
    "nms_threshold": 0.5,
    "score_threshold": 0.05,
    "pre_nms_top_k": 1000,
}

#: Preprocessing ops that write the ``proposals`` and ``proposal_mask`` keys.
PROPOSAL_OPS = ("selective_search",)
# The sampling key is the forward pass's key folded with this, so that it is not the dropout masks' own key.
_SAMPLING_STREAM = 0x5A3
# Evaluation's loss sample: one fixed key, the same regions at every evaluation.
_EVAL_SEED = 0


def label_rois(
    rois: jax.Array,
    valid: jax.Array,
    gt_boxes: jax.Array,
    gt_labels: jax.Array,
    gt_mask: jax.Array,
    foreground_iou: float = 0.5,
    background_iou_low: float = 0.1,
    box_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
) -> tuple[jax.Array, jax.Array]:
    """Labels int32 ``[R]`` and regression targets ``[R, 4]`` of one image's regions ``rois [R, 4]``.

    ``valid [R]`` marks real regions, ``gt_boxes [M, 4]``, ``gt_labels [M]`` (``0..K-1``) and ``gt_mask [M]`` the
    real ground truth. Label ``1 + class`` of the best-overlapping box where the IoU is ``>= foreground_iou``,
    ``0`` (background) where it is in ``[background_iou_low, foreground_iou)``, ``-1`` (not trained) below and for
    padding. Targets are ``encode(best box, roi, box_weights)`` for the foreground, 0 elsewhere.
    """
    rois = jnp.asarray(rois, jnp.float32)
    gt_boxes = jnp.asarray(gt_boxes, jnp.float32)
    # Padding ground truth overlaps nothing: IoU 0, as for an image without objects.
    iou = jnp.where(jnp.asarray(gt_mask)[None, :] > 0, iou_matrix(rois, gt_boxes), 0.0)
    best = iou.max(axis=1)
    index = iou.argmax(axis=1)
    real = jnp.asarray(valid) > 0
    fg = real & (best >= foreground_iou)
    bg = real & ~fg & (best >= background_iou_low)
    labels = jnp.where(fg, jnp.asarray(gt_labels, jnp.int32)[index] + 1, jnp.where(bg, 0, -1))
    targets = jnp.where(fg[:, None], encode(gt_boxes[index], rois, box_weights), 0.0)
    return labels.astype(jnp.int32), targets


def sample_rois(
    key: jax.Array, labels: jax.Array, num_samples: int, foreground_fraction: float = 0.25
) -> tuple[jax.Array, jax.Array]:
    """A balanced sample of one image's labelled regions: ``(index int32 [num_samples], taken bool [num_samples])``.

    :func:`mlcv.ops.anchors.sample_balanced` over ``labels [R]`` (foreground ``>= 1``, background ``0``, ``-1``
    never), its mask turned into indices in increasing order; rows past the sample's size have ``taken`` False
    and index 0.
    """
    labels = jnp.asarray(labels)
    binary = jnp.where(labels > 0, 1, jnp.where(labels == 0, 0, -1))
    mask = sample_balanced(key, binary, num_samples, foreground_fraction)
    # Equal scores come in index order: the sampled regions first, by index.
    _, index, taken = top_k(mask.astype(jnp.float32), num_samples, mask)
    return jnp.maximum(index, 0), taken


def detect(
    probs: jax.Array,
    deltas: jax.Array,
    rois: jax.Array,
    valid: jax.Array,
    image_shape: Sequence[int],
    max_detections: int,
    nms_threshold: float = 0.5,
    score_threshold: float = 0.05,
    pre_nms_top_k: int = 1000,
    box_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
) -> dict[str, jax.Array]:
    """Detections of ``probs [B, R, K + 1]`` (background first) and class-specific ``deltas [B, R, K, 4]``.

    Every (region, object class) pair of the real regions (``valid [B, R]``) is a candidate with that class's
    probability and the region ``rois [B, R, 4]`` moved by that class's deltas, clipped to ``image_shape``
    ``(H, W)``; the ``pre_nms_top_k`` best, then class-aware NMS. Returns the ``det_*`` keys of
    :mod:`mlcv.tasks.detection` by decreasing score, classes ``0..K-1`` (padding rows all 0).
    """
    b, r, k = deltas.shape[:3]
    scores = probs[..., 1:].reshape(b, r * k)
    ok = jnp.repeat(jnp.asarray(valid) > 0, k, axis=1)
    scores, flat, ok = top_k(scores, pre_nms_top_k, ok)
    flat = jnp.maximum(flat, 0)
    roi_index, classes = flat // k, (flat % k).astype(jnp.int32)
    d = jnp.take_along_axis(deltas.reshape(b, r * k, 4), flat[..., None], axis=1)
    base = jnp.take_along_axis(jnp.asarray(rois, jnp.float32), roi_index[..., None], axis=1)
    boxes = clip_boxes(decode(d, base, box_weights), image_shape[0], image_shape[1])
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


class RoIHeadTask(DetectionTask):
    """Labels, samples and scores proposals with a region network (see the module docstring).

    The proposals are read beside the image but are not ``input_keys``: those are cast to ``config.dtype``, and
    bfloat16 would round coordinates of 64-128 px to half a pixel.
    """

    target_keys = ("boxes", "box_labels", "box_mask", "proposals", "proposal_mask")
    #: The model classes this task accepts, and their name in errors.
    model_types: tuple[type, ...] = (RCNN, FastRCNN)
    model_kind = "region (R-CNN or Fast R-CNN)"

    def __init__(self, config: ml_collections.ConfigDict, meta: Any, runs: Sequence[Any] = ()):
        det = config.get("detection") or {}
        self.options = o = {k: det.get(k, v) for k, v in _DEFAULTS.items()}
        if not 0 <= o["background_iou_low"] < o["foreground_iou"] <= 1:
            raise ConfigError("config.detection needs 0 <= background_iou_low < foreground_iou <= 1")
        if int(o["rois_per_image"]) < 1:
            raise ConfigError(f"config.detection.rois_per_image must be >= 1, got {o['rois_per_image']}")
        if not 0 < o["foreground_fraction"] <= 1:
            raise ConfigError(f"config.detection.foreground_fraction must be in (0, 1], got {o['foreground_fraction']}")
        if o["box_loss"] not in ("smooth_l1", "l2"):
            raise ConfigError(f"config.detection.box_loss must be 'smooth_l1' or 'l2', got {o['box_loss']!r}")
        if len(tuple(o["box_weights"])) != 4 or min(o["box_weights"]) <= 0:
            raise ConfigError(f"config.detection.box_weights must be 4 positive numbers, got {o['box_weights']}")
        for key in ("pp_train", "pp_eval"):
            _check_proposals(key, str(config.data.get(key, "")))
        self.box_weights = tuple(float(w) for w in o["box_weights"])
        super().__init__(config, meta, runs)

    def build_model(self) -> nn.Module:
        """``config.model`` with ``num_classes`` object classes from the dataset (it adds the background)."""
        model = models.from_config(self.config.model, num_classes=self.num_classes)
        if not isinstance(model, self.model_types):
            raise ConfigError(
                f"config.model.name {self.config.model.name!r} is not a {self.model_kind} model "
                f"(config.task = {self.config.task!r})"
            )
        return model

    def init_variables(self, rng: jax.Array, batch: Mapping[str, Any]) -> dict[str, Any]:
        """The model's variables, from one image and its proposals."""
        image, rois = jnp.asarray(batch["image"][:1]), jnp.asarray(batch["proposals"][:1], jnp.float32)
        return self.model.init({"params": rng, "dropout": rng}, image, rois, train=False)

    def _labels(self, rois: jax.Array, valid: jax.Array, batch: Mapping[str, jax.Array]) -> tuple:
        o = self.options
        label = lambda r, v, b, lab, m: label_rois(  # noqa: E731
            r, v, b, lab, m, float(o["foreground_iou"]), float(o["background_iou_low"]), self.box_weights
        )
        gt = (batch["boxes"].astype(jnp.float32), batch["box_labels"].astype(jnp.int32), batch["box_mask"])
        return jax.vmap(label)(rois, valid, *gt)

    def _sample(self, key: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
        o = self.options
        keys = jax.random.split(key, labels.shape[0])
        sample = lambda k, lab: sample_rois(k, lab, int(o["rois_per_image"]), float(o["foreground_fraction"]))  # noqa: E731
        return jax.vmap(sample)(keys, labels)

    def apply(self, variables: Mapping[str, Any], batch: Mapping[str, jax.Array], **kwargs: Any) -> Any:
        """The heads' outputs on the regions, with the regions and their labels, targets and loss weights.

        Training (``train=True``): the proposals and ground-truth boxes, labelled, a balanced sample of them
        (the key from ``rngs["dropout"]``, a fixed one without). Evaluation: every proposal, labelled, with the
        loss weights of a fixed-key sample. Extra outputs: ``rois [B, N, 4]``, ``roi_labels [B, N]`` (-1: not
        trained), ``roi_targets [B, N, 4]`` and ``roi_weights [B, N]`` (1: in the loss).
        """
        train = bool(kwargs.get("train", False))
        proposals = batch["proposals"].astype(jnp.float32)
        if train:
            rois = jnp.concatenate([proposals, batch["boxes"].astype(jnp.float32)], axis=1)
            valid = jnp.concatenate([batch["proposal_mask"], batch["box_mask"]], axis=1)
            labels, targets = self._labels(rois, valid, batch)
            rngs = kwargs.get("rngs") or {}
            key = jax.random.fold_in(rngs["dropout"], _SAMPLING_STREAM) if "dropout" in rngs else None
            index, weights = self._sample(jax.random.PRNGKey(_EVAL_SEED) if key is None else key, labels)
            pick = lambda x: jnp.take_along_axis(x, index if x.ndim == 2 else index[..., None], axis=1)  # noqa: E731
            rois, labels, targets = pick(rois), jnp.where(weights, pick(labels), -1), pick(targets)
        else:
            rois = proposals
            labels, targets = self._labels(rois, batch["proposal_mask"], batch)
            index, taken = self._sample(jax.random.PRNGKey(_EVAL_SEED), labels)
            weights = jax.vmap(lambda i, t: jnp.zeros(rois.shape[1]).at[i].max(t.astype(jnp.float32)))(index, taken)
        result = self.model.apply(variables, batch["image"], rois, **kwargs)
        outputs, updates = result if kwargs.get("mutable") else (result, None)
        extra = {"rois": rois, "roi_labels": labels, "roi_targets": targets, "roi_weights": weights.astype(jnp.float32)}
        outputs = {**outputs, **extra}
        return outputs if updates is None else (outputs, updates)

    def _terms(self, outputs: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """Per-image sums ``[B]`` of the cross-entropy and box losses over the weighted regions, and their count."""
        o = self.options
        labels = outputs["roi_labels"].astype(jnp.int32)
        weights = outputs["roi_weights"]
        ce = optax.softmax_cross_entropy_with_integer_labels(outputs["class_logits"], jnp.maximum(labels, 0))
        gt_class = jnp.maximum(labels - 1, 0)[..., None, None]
        d = jnp.take_along_axis(outputs["box_deltas"], gt_class, axis=2)[:, :, 0]  # the gt class's deltas
        residual = d - outputs["roi_targets"]
        per = smooth_l1(residual, float(o["box_beta"])) if o["box_loss"] == "smooth_l1" else l2(residual)
        fg = (labels >= 1) * weights
        return {
            "class": jnp.sum(ce * weights, axis=1),
            "box": jnp.sum(jnp.sum(per, axis=-1) * fg, axis=1),
            "count": jnp.sum(weights, axis=1),
            "foreground": jnp.sum(fg, axis=1),
        }

    def losses(
        self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array], context: StepContext
    ) -> dict[str, jax.Array]:
        """Cross-entropy and lambda x box loss, each summed over the batch's sampled regions and divided by their
        number (the regions were sampled in :meth:`apply`; ``context`` is not needed)."""
        del batch, context
        t = self._terms(outputs)
        n = jnp.maximum(jnp.sum(t["count"]), 1.0)
        return {"class": jnp.sum(t["class"]) / n, "box": float(self.options["box_weight"]) * jnp.sum(t["box"]) / n}

    def train_metrics(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """Sampled and foreground regions an image, and the boxes beyond the padding."""
        t = self._terms(outputs)
        regions = {"rois": jnp.mean(t["count"]), "foreground_rois": jnp.mean(t["foreground"])}
        return {**super().train_metrics(outputs, batch), **regions}

    def predict(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """Detections, the heads (for ensembles) and each image's loss over its fixed-key sample of proposals."""
        t = self._terms(outputs)
        loss = (t["class"] + float(self.options["box_weight"]) * t["box"]) / jnp.maximum(t["count"], 1.0)
        probs = jax.nn.softmax(outputs["class_logits"], axis=-1)
        deltas = outputs["box_deltas"]
        return {**self._detect(probs, deltas, batch), "class_probs": probs, "box_deltas": deltas, "loss": loss}

    def _detect(self, probs: jax.Array, deltas: jax.Array, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        o = self.options
        return detect(
            probs,
            deltas,
            batch["proposals"],
            batch["proposal_mask"],
            batch["image"].shape[1:3],
            self.max_detections,
            float(o["nms_threshold"]),
            float(o["score_threshold"]),
            int(o["pre_nms_top_k"]),
            self.box_weights,
        )

    def combine(self, predictions: Sequence[Mapping[str, jax.Array]], batch: Mapping[str, jax.Array]) -> dict:
        """Averages the members' class probabilities and box deltas per proposal, then decodes and suppresses once."""
        mean = {k: jnp.mean(jnp.stack([p[k] for p in predictions]), axis=0) for k in ("class_probs", "box_deltas")}
        out = self._detect(mean["class_probs"], mean["box_deltas"], batch)
        return {**out, **mean, "loss": jnp.mean(jnp.stack([p["loss"] for p in predictions]), axis=0)}


def _check_proposals(key: str, pp: str) -> None:
    """``config.data.<key>`` must compute proposals, before ``normalize`` (they are found on the image's pixels)."""
    names = [piece.split("(")[0].strip() for piece in pp.split("|")]
    at = next((i for i, name in enumerate(names) if name in PROPOSAL_OPS), None)
    if at is None or ("normalize" in names and names.index("normalize") < at):
        raise ConfigError(
            f"config.data.{key} = {pp!r} must compute region proposals with {' or '.join(PROPOSAL_OPS)}(n) "
            "before normalize (the batch keys 'proposals' and 'proposal_mask')"
        )


class RCNNTask(RoIHeadTask):
    """R-CNN: the region network warps every region and runs the CNN on each (:class:`mlcv.models.rcnn.RCNN`)."""

    model_types = (RCNN,)
    model_kind = "R-CNN"


class FastRCNNTask(RoIHeadTask):
    """Fast R-CNN: the CNN once per image, RoIPool per region (:class:`mlcv.models.fast_rcnn.FastRCNN`)."""

    model_types = (FastRCNN,)
    model_kind = "Fast R-CNN"

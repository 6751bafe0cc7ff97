"""YOLOv3 (Redmon & Farhadi 2018): one prior per object at three scales, objectness x class sigmoids (course §10.2).

Priors: ``3 A`` box shapes ``(p_h, p_w)`` in pixels (``A = 3``), sorted by area, the ``A`` smallest on the
stride-8 scale, the next on stride 16, the largest on stride 32. ``config.detection.anchors`` lists them, or is
``"kmeans"``: k-means with the distance ``1 - IoU`` over the training boxes' shapes
(:func:`mlcv.ops.anchor_kmeans.kmeans_anchors`, seed ``kmeans_seed``), the paper's way. The tasks layer may
not read datasets (tests/test_layers.py), so ``"kmeans"`` takes the boxes from whoever builds the task
(``train_boxes=``): :func:`mlcv.training.runs.build_task` passes every box of the training split after
``config.data.pp_eval`` (the frame the network sees, without the training jitter), in training and when a
finished run is read back, so both get the same priors; they are printed at the start. Default: the paper's
nine COCO priors (for 416 px inputs).

Box parametrisation (the paper's eqs., y-first as every mlcv box). A prediction at cell ``(c_y, c_x)`` of a scale
of stride ``s``, with prior ``(p_h, p_w)`` and outputs ``(t_y, t_x, t_h, t_w)``, is the box::

    b_y = (sigmoid(t_y) + c_y) s        b_x = (sigmoid(t_x) + c_x) s
    b_h = p_h exp(t_h)                  b_w = p_w exp(t_w)

(the paper writes ``b_x = sigmoid(t_x) + c_x`` in cells; ``s`` turns cells into pixels). The size is R-CNN's
parametrisation (course eqs. 49-53, :func:`mlcv.ops.box_coding.encode`): ``t_w = log(g_w / p_w)``, with the prior
as the anchor. The centre is not: R-CNN's ``t_x = (g_x - p_x) / p_w`` is unbounded, so an early prediction may
land anywhere in the image; YOLO's (since YOLOv2, "direct location prediction") is the sigmoid of an offset
inside the cell that holds the object's centre, which keeps training stable. Targets:
``o_y = g_y / s - c_y`` in ``[0, 1]``, ``t_h* = log(g_h / p_h)``.

Assignment, inside the jitted step (:func:`assign`): each gt box goes to the single prior of the nine with the
highest IoU of shapes (both on one centre; the first prior on ties), at the cell of its centre on that prior's
scale. Collision: when two gt boxes land on one cell and prior, the first in the batch's box order keeps it and
the other trains nothing (counted as ``train/collisions``; Darknet keeps the last one written). Its box still
keeps overlapping predictions from being negatives (the ignore rule below). Departure, off by default:
``assign_iou`` (a float) also gives each box every other prior whose shape IoU with it is above ``assign_iou``
(YOLOv4's ``iou_thresh`` rule, 0.213 there), each at the cell of the box's centre on that prior's scale, so that
an object trains several predictions instead of one; a box's best prior goes first, the extras after. ``1.0``
adds none (no IoU is above 1), as ``None``.

Loss, summed over an image's predictions and averaged over images (the paper's sums; weights ``box_weight``,
``object_weight``, ``class_weight``, all 1):

- objectness: sigmoid cross-entropy, target 1 at assigned predictions, 0 elsewhere, except that a prediction whose
  decoded box (no gradient through it) has IoU ``> ignore_iou`` (0.5) with some gt box is not a negative;
- classes: sigmoid cross-entropy of the ``K`` classes, one-hot target, at assigned predictions only;
- box, at assigned predictions only: ``box_loss = "bce"`` (default, as the public PyTorch implementations):
  cross-entropy of ``sigmoid(t_y), sigmoid(t_x)`` against the offsets ``o_y, o_x`` (its minimum is the
  offsets' entropy, not 0) plus ``0.5 (t - t*)^2`` of ``t_h, t_w``; ``"sse"``: the paper's sum of squared
  errors, ``0.5 (sigmoid(t_y) - o_y)^2 + ... + 0.5 (t_w - t_w*)^2`` (the centre compared after the sigmoid as
  Darknet does: the logit of an offset 0 or 1 is infinite). Departure: no ``2 - w h`` weighting of small
  boxes (Darknet's code, not the paper).

Decoding (:func:`detect`): score = ``sigmoid(objectness) x sigmoid(class)`` for every (prediction, class), the
``pre_nms_top_k`` best, those above ``score_threshold`` (0.01), clipped to the image, class-aware NMS at
``nms_threshold`` (0.5), at most ``max_detections``. Other keys of ``config.detection``: ``ignore_iou`` (0.5),
``kmeans_seed`` (0).
"""

from __future__ import annotations

import functools
import sys
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
from mlcv.ops.anchor_kmeans import kmeans_anchors
from mlcv.ops.box_coding import DEFAULT_SCALE_CLAMP, clip_boxes, iou_matrix
from mlcv.ops.nms import batched_nms, top_k
from mlcv.tasks.base import StepContext
from mlcv.tasks.detection import DetectionTask

#: The paper's COCO priors for 416 px inputs, as (h, w) (the paper lists (w, h): 10x13, 16x30, ... 373x326).
PAPER_PRIORS = ((13, 10), (30, 16), (23, 33), (61, 30), (45, 62), (119, 59), (90, 116), (198, 156), (326, 373))

_DEFAULTS: dict[str, Any] = {
    "anchors": PAPER_PRIORS,
    "kmeans_seed": 0,
    "ignore_iou": 0.5,
    "assign_iou": None,
    "box_loss": "bce",
    "box_weight": 1.0,
    "object_weight": 1.0,
    "class_weight": 1.0,
    "nms_threshold": 0.5,
    "score_threshold": 0.01,
    "pre_nms_top_k": 1000,
}


@functools.lru_cache(maxsize=16)
def layout(image_shape: tuple[int, int], strides: tuple[int, ...], num_anchors: int) -> dict[str, np.ndarray]:
    """Per prediction, in the model's order: ``cell [N, 2]`` (row, column), ``stride [N]``, ``prior [N]`` (index
    into the sorted priors: ``A x`` scale ``+`` the cell's anchor), and per scale its first row ``offset [S]``,
    ``grid [S, 2]`` cells. NumPy constants of the traced step.
    """
    cells, stride, prior, offset = [], [], [], []
    shapes = level_shapes(image_shape, strides)
    for scale, ((h, w), s) in enumerate(zip(shapes, strides, strict=True)):
        offset.append(sum(len(c) for c in cells))
        ij = np.stack(np.meshgrid(np.arange(h), np.arange(w), indexing="ij"), -1).reshape(-1, 1, 2)
        cells.append(np.broadcast_to(ij, (h * w, num_anchors, 2)).reshape(-1, 2))
        stride.append(np.full(h * w * num_anchors, s))
        prior.append(np.tile(np.arange(num_anchors), h * w) + scale * num_anchors)
    return {
        "cell": np.concatenate(cells).astype(np.float32),
        "stride": np.concatenate(stride).astype(np.float32),
        "prior": np.concatenate(prior),
        "offset": np.asarray(offset),
        "grid": np.asarray(shapes),
    }


def decode_boxes(box: jax.Array, priors: np.ndarray, lay: Mapping[str, np.ndarray]) -> jax.Array:
    """Boxes ``[..., N, 4]`` in pixels of the outputs ``(t_y, t_x, t_h, t_w) [..., N, 4]`` (the paper's eqs.).

    ``t_h, t_w`` are clamped at ``log(1000 / 16)`` before the exponential, as :func:`~mlcv.ops.box_coding.decode`.
    """
    s = lay["stride"][:, None]
    centre = (jax.nn.sigmoid(box[..., :2]) + lay["cell"]) * s
    size = priors[lay["prior"]] * jnp.exp(jnp.minimum(box[..., 2:], DEFAULT_SCALE_CLAMP))
    return jnp.concatenate([centre - size / 2, centre + size / 2], axis=-1)


def assign(
    boxes: jax.Array,
    valid: jax.Array,
    priors: np.ndarray,
    lay: Mapping[str, np.ndarray],
    num_anchors: int,
    extra_iou: float | None = None,
) -> dict[str, jax.Array]:
    """Which gt box each prediction learns: ``owner [B, N]`` (gt row, ``-1``: none), ``valid [B, M]`` (real,
    non-empty boxes), ``collisions [B]`` (real boxes whose best prior, at their cell, went to an earlier box).

    ``boxes [B, M, 4]``, ``valid [B, M]``, ``priors [3 A, 2]`` sorted, ``lay`` of :func:`layout`. ``extra_iou``:
    when set, a box also goes to every other prior whose shape IoU with it is above ``extra_iou``, at the cell of
    its centre on that prior's scale (after every box's best prior has been placed, so that an extra never takes
    a best prior's place).
    """
    b, m = valid.shape
    n, p = lay["cell"].shape[0], len(priors)
    h, w = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    ok = (valid > 0) & (h > 0) & (w > 0)
    ph, pw = priors[:, 0], priors[:, 1]
    inter = jnp.minimum(h[..., None], ph) * jnp.minimum(w[..., None], pw)
    shape_iou = inter / (h[..., None] * w[..., None] + ph * pw - inter)  # [B, M, P]
    best = jnp.argmax(shape_iou, axis=-1)  # [B, M], first on ties
    centre = jnp.stack([boxes[..., 0] + h / 2, boxes[..., 1] + w / 2], axis=-1)

    def rows_of(prior: jax.Array) -> jax.Array:  # the prediction of each box at ``prior`` ([B, M] indices)
        scale = prior // num_anchors
        stride = jnp.asarray(lay["stride"][lay["offset"]])[scale]
        grid = jnp.asarray(lay["grid"])[scale]  # [B, M, 2]
        cell = jnp.clip(jnp.floor(centre / stride[..., None]).astype(jnp.int32), 0, grid - 1)
        flat = jnp.asarray(lay["offset"])[scale] + (cell[..., 0] * grid[..., 1] + cell[..., 1]) * num_anchors
        return flat + prior % num_anchors

    # Candidate (box, prediction) pairs in priority order: every box's best prior, then the extras.
    flat, live, gt = [rows_of(best)], [ok], [jnp.arange(m)]
    if extra_iou is not None:
        for q in range(p):
            flat.append(rows_of(jnp.full_like(best, q)))
            live.append(ok & (best != q) & (shape_iou[..., q] > extra_iou))
            gt.append(jnp.arange(m))
    flat, live = jnp.concatenate(flat, axis=1), jnp.concatenate(live, axis=1)  # [B, C]
    gt = jnp.broadcast_to(jnp.concatenate(gt).astype(jnp.int32), flat.shape)
    # The first live candidate on a (cell, prior) wins; scattering only winners keeps the result order-free.
    c = flat.shape[1]
    earlier = jnp.tril(jnp.ones((c, c), bool), -1)  # [i, j]: j < i
    taken = ((flat[:, :, None] == flat[:, None, :]) & live[:, None, :] & earlier[None]).any(-1)
    winner = live & ~taken
    rows = jnp.broadcast_to(jnp.arange(b)[:, None], (b, c))
    owner = jnp.full((b, n), -1, jnp.int32).at[rows, jnp.where(winner, flat, n)].set(gt, mode="drop")
    return {"owner": owner, "valid": ok, "collisions": jnp.sum(ok & taken[:, :m], axis=1).astype(jnp.float32)}


def targets(
    boxes: jax.Array, labels: jax.Array, owner: jax.Array, priors: np.ndarray, lay: Mapping[str, np.ndarray], k: int
) -> dict[str, jax.Array]:
    """Targets of every prediction (meaningful where ``owner >= 0``): ``offset [B, N, 2]`` ``(o_y, o_x)``,
    ``size [B, N, 2]`` ``(t_h*, t_w*)``, ``classes [B, N, K]`` one-hot, ``positive [B, N]``."""
    positive = owner >= 0
    safe = jnp.maximum(owner, 0)
    gt = jnp.take_along_axis(boxes, safe[..., None], axis=1)
    hw = jnp.maximum(gt[..., 2:] - gt[..., :2], 1e-6)  # padding rows stay finite; their loss is masked
    centre = (gt[..., :2] + gt[..., 2:]) / 2
    offset = jnp.clip(centre / lay["stride"][:, None] - lay["cell"], 0.0, 1.0)
    size = jnp.log(hw / priors[lay["prior"]])
    classes = jax.nn.one_hot(jnp.take_along_axis(labels, safe, axis=1), k) * positive[..., None]
    return {"offset": offset, "size": size, "classes": classes, "positive": positive.astype(jnp.float32)}


def detect(
    scores: jax.Array,
    boxes: jax.Array,
    image_shape: Sequence[int],
    max_detections: int,
    nms_threshold: float = 0.5,
    score_threshold: float = 0.01,
    pre_nms_top_k: int = 1000,
) -> dict[str, jax.Array]:
    """The ``det_*`` keys of scores ``[B, N, K]`` (objectness x class) and decoded boxes ``[B, N, 4]``.

    The ``pre_nms_top_k`` best (prediction, class) scores of each image, clipped to ``image_shape``, class-aware
    NMS; rows by decreasing score, padding rows all 0 (as :func:`mlcv.tasks.retinanet.detect`).
    """
    b, n, k = scores.shape
    values, flat, ok = top_k(scores.reshape(b, n * k), pre_nms_top_k)
    flat = jnp.maximum(flat, 0)
    index, classes = flat // k, (flat % k).astype(jnp.int32)
    picked = clip_boxes(jnp.take_along_axis(boxes, index[..., None], axis=1), image_shape[0], image_shape[1])
    values = jnp.where(ok, values, 0.0)
    keep, mask = batched_nms(picked, values, classes, nms_threshold, max_detections, score_threshold, ok)
    at = jnp.maximum(keep, 0)
    take = lambda x: jnp.take_along_axis(x, at if x.ndim == 2 else at[..., None], axis=1)  # noqa: E731
    return {
        "det_boxes": jnp.where(mask[..., None], take(picked), 0.0),
        "det_scores": jnp.where(mask, take(values), 0.0),
        "det_classes": jnp.where(mask, take(classes), 0).astype(jnp.int32),
        "det_mask": mask.astype(jnp.float32),
    }


def _priors(value: Any, train_boxes: Any, seed: int) -> tuple[np.ndarray, float | None]:
    """The sorted ``(h, w)`` priors of ``config.detection.anchors`` and, for ``"kmeans"``, their mean IoU."""
    if isinstance(value, str):
        if value != "kmeans":
            raise ConfigError(f"config.detection.anchors must be 'kmeans' or a list of (h, w), got {value!r}")
        if train_boxes is None:
            raise ConfigError(
                "config.detection.anchors = 'kmeans' needs the training split's boxes (train_boxes=, which "
                "mlcv.training.runs.build_task gives); list the (h, w) priors instead, "
                "e.g. from mlcv.ops.anchor_kmeans.kmeans_anchors"
            )
        boxes = np.concatenate([np.asarray(b, np.float64).reshape(-1, 4) for b in train_boxes])
        shapes = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1)
        try:
            return kmeans_anchors(shapes, 9, seed=seed)
        except ValueError as e:
            raise ConfigError(f"config.detection.anchors = 'kmeans': {e}") from None
    try:
        priors = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        priors = np.zeros(0)  # refused just below, naming the key
    if priors.ndim != 2 or priors.shape[1] != 2 or len(priors) % 3 or not (priors > 0).all():
        raise ConfigError(
            f"config.detection.anchors must be 3 A positive (h, w) pairs (A per scale), got {np.asarray(value)}"
        )
    return priors[np.lexsort((priors[:, 0], priors[:, 0] * priors[:, 1]))], None


class YOLOv3Task(DetectionTask):
    """Priors at three scales, one per object, objectness x class sigmoids (see the module docstring)."""

    def __init__(
        self, config: ml_collections.ConfigDict, meta: Any, runs: Sequence[Any] = (), *, train_boxes: Any = None
    ):
        det = config.get("detection") or {}
        self.options = {k: det.get(k, v) for k, v in _DEFAULTS.items()}
        o = self.options
        if o["box_loss"] not in ("bce", "sse"):
            raise ConfigError(f"config.detection.box_loss must be 'bce' or 'sse', got {o['box_loss']!r}")
        if not 0 < o["ignore_iou"] <= 1:
            raise ConfigError(f"config.detection.ignore_iou must be in (0, 1], got {o['ignore_iou']}")
        if o["assign_iou"] is not None and not 0 < o["assign_iou"] <= 1:
            raise ConfigError(f"config.detection.assign_iou must be None or in (0, 1], got {o['assign_iou']}")
        self.priors, self.prior_iou = _priors(o["anchors"], train_boxes, int(o["kmeans_seed"]))
        if self.prior_iou is not None:
            shown = ", ".join(f"{h:.1f}x{w:.1f}" for h, w in self.priors)
            print(f"yolov3: k-means priors (h x w) {shown}; mean IoU {self.prior_iou:.3f}", file=sys.stderr)
        self.priors = self.priors.astype(np.float32)
        super().__init__(config, meta, runs)

    @classmethod
    def needs_train_boxes(cls, config: ml_collections.ConfigDict) -> bool:
        """True for ``config.detection.anchors = "kmeans"``: the priors are fitted to the training boxes."""
        return (config.get("detection") or {}).get("anchors") == "kmeans"

    def build_model(self) -> nn.Module:
        """``config.model`` (a YOLOv3) with ``num_classes`` from the dataset and ``A`` priors per cell."""
        model = models.from_config(self.config.model, num_classes=self.num_classes, num_anchors=len(self.priors) // 3)
        self.strides = tuple(model.strides)
        return model

    def layout(self, image_shape: Sequence[int]) -> dict[str, np.ndarray]:
        """The per-prediction cells, strides and priors of an ``(H, W)`` input (:func:`layout`)."""
        return layout((int(image_shape[0]), int(image_shape[1])), self.strides, len(self.priors) // 3)

    def _terms(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """Per-image sums ``[B]`` of the three losses, the positives and the collisions."""
        o, a = self.options, len(self.priors) // 3
        lay = self.layout(batch["image"].shape[1:3])
        boxes = batch["boxes"].astype(jnp.float32)
        extra = o["assign_iou"]
        assigned = assign(boxes, batch["box_mask"], self.priors, lay, a, None if extra is None else float(extra))
        t = targets(boxes, batch["box_labels"].astype(jnp.int32), assigned["owner"], self.priors, lay, self.num_classes)
        pos = t["positive"]
        decoded = jax.lax.stop_gradient(decode_boxes(outputs["box"], self.priors, lay))
        iou = jnp.where(assigned["valid"][:, None, :], iou_matrix(decoded, boxes), 0.0)
        counted = jnp.maximum(pos, (iou.max(axis=-1) <= float(o["ignore_iou"])).astype(jnp.float32))
        obj = optax.sigmoid_binary_cross_entropy(outputs["objectness"], pos) * counted
        cls = optax.sigmoid_binary_cross_entropy(outputs["class_logits"], t["classes"]).sum(-1) * pos
        centre, size = outputs["box"][..., :2], outputs["box"][..., 2:]
        if o["box_loss"] == "bce":
            centre_loss = optax.sigmoid_binary_cross_entropy(centre, t["offset"])
        else:
            centre_loss = 0.5 * (jax.nn.sigmoid(centre) - t["offset"]) ** 2
        box = (centre_loss.sum(-1) + 0.5 * ((size - t["size"]) ** 2).sum(-1)) * pos
        return {
            "box": float(o["box_weight"]) * box.sum(1),
            "objectness": float(o["object_weight"]) * obj.sum(1),
            "classes": float(o["class_weight"]) * cls.sum(1),
            "positives": pos.sum(1),
            "collisions": assigned["collisions"],
        }

    def losses(
        self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array], context: StepContext
    ) -> dict[str, jax.Array]:
        """The box, objectness and class terms: each image's sum over its predictions, averaged over images."""
        del context
        terms = self._terms(outputs, batch)
        return {k: jnp.mean(terms[k]) for k in ("box", "objectness", "classes")}

    def train_metrics(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """Assigned predictions an image, boxes of the batch lost to collisions, and boxes beyond the padding."""
        terms = self._terms(outputs, batch)
        extra = {"positives": jnp.mean(terms["positives"]), "collisions": jnp.sum(terms["collisions"])}
        return {**super().train_metrics(outputs, batch), **extra}

    def predict(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """Detections, the decoded heads (for ensembles) and each image's loss (the sum of its three terms)."""
        terms = self._terms(outputs, batch)
        loss = terms["box"] + terms["objectness"] + terms["classes"]
        heads = {
            "objectness": jax.nn.sigmoid(outputs["objectness"]),
            "class_probs": jax.nn.sigmoid(outputs["class_logits"]),
            "pred_boxes": decode_boxes(outputs["box"], self.priors, self.layout(batch["image"].shape[1:3])),
        }
        return {**self._detect(heads, batch), **heads, "loss": loss}

    def _detect(self, heads: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        o = self.options
        return detect(
            heads["objectness"][..., None] * heads["class_probs"],
            heads["pred_boxes"],
            batch["image"].shape[1:3],
            self.max_detections,
            float(o["nms_threshold"]),
            float(o["score_threshold"]),
            int(o["pre_nms_top_k"]),
        )

    def combine(self, predictions: Sequence[Mapping[str, jax.Array]], batch: Mapping[str, jax.Array]) -> dict:
        """Averages the members' objectness and class probabilities and decoded boxes, then decodes once.

        Prediction ``n`` is the same cell and prior in every member with the same priors and strides.
        """
        keys = ("objectness", "class_probs", "pred_boxes")
        mean = {k: jnp.mean(jnp.stack([p[k] for p in predictions]), axis=0) for k in keys}
        out = self._detect(mean, batch)
        return {**out, **mean, "loss": jnp.mean(jnp.stack([p["loss"] for p in predictions]), axis=0)}

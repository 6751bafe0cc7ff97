"""CenterNet (Zhou et al. 2019, "Objects as Points"): objects as heatmap peaks, no anchors and no NMS.

Targets, built inside the jitted step from the padded boxes (course §10.2):

- each box's centre ``c = ((ymin + ymax) / 2, (xmin + xmax) / 2) / R`` on the output grid of stride ``R``
  falls in cell ``p = floor(c)``; the class's heatmap there is 1, and around it a Gaussian
  ``exp(-|q - p|^2 / (2 sigma^2))`` with ``sigma = (2 r + 1) / 6`` and radius ``r`` from the box size
  (:func:`gaussian_radius`), the element-wise maximum where Gaussians of one class meet;
- the penalty-reduced focal loss (eq. 1 of the paper, alpha 2, beta 4) over every cell and class,
  divided by the number of objects;
- at each centre cell, an L1 loss on the size ``(h, w) / R`` (weight 0.1) and on the offset ``c - p``
  (weight 1) that the stride lost.

Decoding: sigmoid heatmaps, the peaks that equal their 3x3 neighbourhood's maximum (a max-pool instead
of NMS), the top ``max_detections`` scores over cells and classes, each box rebuilt from its cell's size
and offset. Config keys under ``config.detection`` (optional): ``size_weight`` (0.1), ``offset_weight``
(1), ``min_overlap`` (0.7), ``max_detections`` (100).

Departure: :func:`gaussian_radius` keeps the released code's formula (from CornerNet), whose second and
third roots divide by 2 where the quadratic formula divides by ``2a``; the radii are larger than the exact
roots, as in the published results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from mlcv import models
from mlcv.tasks.base import StepContext
from mlcv.tasks.detection import DetectionTask


def gaussian_radius(height: jax.Array, width: jax.Array, min_overlap: float = 0.7) -> jax.Array:
    """CornerNet's radius: how far corners may move with the box keeping IoU >= ``min_overlap`` (3 cases).

    The smallest of the three roots, as the released CornerNet and CenterNet code computes them.
    """
    m = min_overlap
    b1 = height + width
    c1 = width * height * (1 - m) / (1 + m)
    r1 = (b1 + jnp.sqrt(b1**2 - 4 * c1)) / 2
    b2 = 2 * (height + width)
    c2 = (1 - m) * width * height
    r2 = (b2 + jnp.sqrt(b2**2 - 16 * c2)) / 2
    a3 = 4 * m
    b3 = -2 * m * (height + width)
    c3 = (m - 1) * width * height
    r3 = (b3 + jnp.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return jnp.minimum(jnp.minimum(r1, r2), r3)


def _centre_cells(boxes: jax.Array, stride: int, grid: tuple[int, int]) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per box: the centre ``[..., 2]`` in cells, its cell ``[..., 2]`` (int32, inside the grid), size in cells."""
    centre = (boxes[..., :2] + boxes[..., 2:]) / (2 * stride)
    cell = jnp.clip(jnp.floor(centre), 0, jnp.array(grid) - 1).astype(jnp.int32)
    size = (boxes[..., 2:] - boxes[..., :2]) / stride
    return centre, cell, size


def heatmap_targets(
    boxes: jax.Array, labels: jax.Array, valid: jax.Array, stride: int, grid: tuple[int, int], num_classes: int,
    min_overlap: float = 0.7,
) -> tuple[jax.Array, jax.Array]:  # fmt: skip
    """``(heatmap [B, h, w, C], centres [B, h, w, C])``: Gaussian targets and the 0/1 centre cells.

    Args:
      boxes: ``[B, N, 4]`` in input pixels; labels ``[B, N]``; valid ``[B, N]`` (0 for padding rows).
      stride: the output stride ``R``; grid ``(h, w)``; num_classes ``C``.
    """
    _, cell, size = _centre_cells(boxes, stride, grid)
    radius = jnp.maximum(jnp.floor(gaussian_radius(size[..., 0], size[..., 1], min_overlap)), 0.0)
    sigma = (2 * radius + 1) / 6
    dy = jnp.arange(grid[0])[None, None, :] - cell[..., 0:1]  # [B, N, h]
    dx = jnp.arange(grid[1])[None, None, :] - cell[..., 1:2]  # [B, N, w]
    d2 = dy[..., :, None] ** 2 + dx[..., None, :] ** 2  # [B, N, h, w]
    # The released code draws the Gaussian in a (2r + 1)^2 window only.
    r = radius[..., None, None]
    window = (jnp.abs(dy)[..., :, None] <= r) & (jnp.abs(dx)[..., None, :] <= r)
    gauss = jnp.exp(-d2 / (2 * sigma[..., None, None] ** 2)) * window * valid[..., None, None]
    onehot = jax.nn.one_hot(labels, num_classes) * valid[..., None]  # [B, N, C]
    heat = jnp.max(gauss[..., None] * onehot[:, :, None, None, :], axis=1)
    centres = jnp.max(((d2 == 0) * valid[..., None, None])[..., None] * onehot[:, :, None, None, :], axis=1)
    return jnp.maximum(heat, centres), centres


def focal_loss_terms(logits: jax.Array, heat: jax.Array, centres: jax.Array) -> jax.Array:
    """The penalty-reduced focal loss of every cell and class (eq. 1, alpha 2, beta 4), not yet normalised.

    ``-(1 - p)^2 log p`` at the centres, ``-(1 - Y)^4 p^2 log(1 - p)`` elsewhere; ``log p`` through
    ``log_sigmoid`` so that no clamping of ``p`` is needed.
    """
    p = jax.nn.sigmoid(logits)
    pos = -((1 - p) ** 2) * jax.nn.log_sigmoid(logits) * centres
    neg = -((1 - heat) ** 4) * p**2 * jax.nn.log_sigmoid(-logits) * (1 - centres)
    return pos + neg


def _at_cells(values: jax.Array, cell: jax.Array) -> jax.Array:
    """``values [B, h, w, D]`` read at ``cell [B, N, 2]``: ``[B, N, D]``."""
    b, h, w, d = values.shape
    flat = values.reshape(b, h * w, d)
    index = cell[..., 0] * w + cell[..., 1]
    return jnp.take_along_axis(flat, index[..., None], axis=1)


def decode(
    heatmap_probs: jax.Array, size: jax.Array, offset: jax.Array, stride: int, image_shape: Sequence[int], k: int
) -> dict[str, jax.Array]:
    """Detections from the heads: 3x3 peaks, top ``k`` over cells and classes, boxes in input pixels."""
    b, h, w, c = heatmap_probs.shape
    pooled = nn.max_pool(heatmap_probs, (3, 3), strides=(1, 1), padding="SAME")
    peaks = jnp.where(heatmap_probs == pooled, heatmap_probs, 0.0)
    scores, index = jax.lax.top_k(peaks.reshape(b, h * w * c), min(k, h * w * c))
    cell_index, classes = index // c, index % c
    cell = jnp.stack([cell_index // w, cell_index % w], axis=-1)
    centre = (cell + _at_cells(offset, cell)) * stride
    half = _at_cells(size, cell) * stride / 2
    limit = jnp.array([image_shape[0], image_shape[1]] * 2, jnp.float32)
    boxes = jnp.clip(jnp.concatenate([centre - half, centre + half], axis=-1), 0.0, limit)
    return {
        "det_boxes": boxes,
        "det_scores": scores,
        "det_classes": classes.astype(jnp.int32),
        # Fewer than k peaks: the rest of the top k are suppressed cells of score 0, not detections.
        "det_mask": (scores > 0).astype(jnp.float32),
    }


class CenterNetTask(DetectionTask):
    """Class heatmaps, sizes and offsets at stride ``R`` (see the module docstring)."""

    def __init__(self, config: ml_collections.ConfigDict, meta: Any, runs: Sequence[Any] = ()):
        det = config.get("detection") or {}
        self.size_weight = float(det.get("size_weight", 0.1))
        self.offset_weight = float(det.get("offset_weight", 1.0))
        self.min_overlap = float(det.get("min_overlap", 0.7))
        super().__init__(config, meta, runs)

    def build_model(self) -> nn.Module:
        """``config.model`` (a CenterNet) with one heatmap per box class."""
        return models.from_config(self.config.model, num_classes=self.num_classes)

    def _terms(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """Per-image sums ``[B]`` of each loss term and the object count."""
        logits = outputs["heatmap"]
        grid = logits.shape[1:3]
        stride = batch["image"].shape[1] // grid[0]
        valid = batch["box_mask"].astype(jnp.float32)
        boxes = batch["boxes"].astype(jnp.float32)
        heat, centres = heatmap_targets(
            boxes, batch["box_labels"].astype(jnp.int32), valid, stride, grid, self.num_classes, self.min_overlap
        )
        centre, cell, size = _centre_cells(boxes, stride, grid)
        l1 = lambda pred, target: jnp.sum(jnp.abs(pred - target), -1) * valid  # noqa: E731
        return {
            "focal": jnp.sum(focal_loss_terms(logits, heat, centres), axis=(1, 2, 3)),
            "size": jnp.sum(l1(_at_cells(outputs["size"], cell), size), -1),
            "offset": jnp.sum(l1(_at_cells(outputs["offset"], cell), centre - cell), -1),
            "objects": jnp.sum(valid, -1),
        }

    def _weighted(self, terms: Mapping[str, jax.Array], objects: jax.Array) -> dict[str, jax.Array]:
        n = jnp.maximum(objects, 1.0)
        return {
            "focal": terms["focal"] / n,
            "size_l1": self.size_weight * terms["size"] / n,
            "offset_l1": self.offset_weight * terms["offset"] / n,
        }

    def losses(
        self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array], context: StepContext
    ) -> dict[str, jax.Array]:
        """The focal, size and offset terms, each summed over the batch and divided by its object count."""
        del context
        terms = self._terms(outputs, batch)
        return self._weighted({k: jnp.sum(v) for k, v in terms.items()}, jnp.sum(terms["objects"]))

    def predict(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """Decoded detections, the heads (for ensembles) and each image's loss over its own objects."""
        terms = self._terms(outputs, batch)
        loss = sum(self._weighted(terms, terms["objects"]).values())
        probs = jax.nn.sigmoid(outputs["heatmap"])
        return {
            **self._decode(probs, outputs["size"], outputs["offset"], batch),
            "heatmap_probs": probs,
            "size": outputs["size"],
            "offset": outputs["offset"],
            "loss": loss,
        }

    def _decode(self, probs: jax.Array, size: jax.Array, offset: jax.Array, batch: Mapping[str, jax.Array]) -> dict:
        image_shape = batch["image"].shape[1:3]
        return decode(probs, size, offset, image_shape[0] // probs.shape[1], image_shape, self.max_detections)

    def combine(self, predictions: Sequence[Mapping[str, jax.Array]], batch: Mapping[str, jax.Array]) -> dict:
        """Averages the members' heatmaps, sizes and offsets, then decodes once; the loss is the members' mean."""
        heads = ("heatmap_probs", "size", "offset")
        mean = {k: jnp.mean(jnp.stack([p[k] for p in predictions]), axis=0) for k in heads}
        out = self._decode(mean["heatmap_probs"], mean["size"], mean["offset"], batch)
        return {**out, **mean, "loss": jnp.mean(jnp.stack([p["loss"] for p in predictions]), axis=0)}

"""R-CNN (Girshick et al. 2014, "Rich feature hierarchies"): a CNN applied to every warped region (course §10.2).

The network only: which regions it sees (proposals + ground truth, sampled), their labels, the loss and the
decoding live in :mod:`mlcv.tasks.rcnn`. ``__call__(image [B, H, W, C], rois [B, R, 4])`` returns, per region,
``class_logits [B, R, K + 1]`` (column 0 is background) and class-specific ``box_deltas [B, R, K, 4]``
(``(t_y, t_x, t_h, t_w)`` of :func:`mlcv.ops.box_coding.encode` for each of the ``K`` object classes).

Each region:

1. is dilated for context (:func:`context_boxes`): as the paper, so that once warped there are exactly ``p``
   pixels of warped image context around the original box (its ``p = 16`` at 227x227);
2. is warped to ``warp_size x warp_size`` (:func:`warp_regions`), anisotropically whatever its aspect ratio, by
   bilinear sampling, inside the jitted step (:func:`mlcv.ops.roi.roi_align` on the image itself, one sample a
   pixel);
3. goes through the CNN (:class:`ConvStages`, each stage ending in a 2x2 max pool) and the fully connected
   layers of :class:`BoxHead` (the paper's fc6, fc7), then a softmax classifier over ``K + 1`` classes and the
   class-specific box regressor.

Departures from the paper:

- warps of 32x32 on the 96x96 digit scenes (digits of 10-40 px) instead of 227x227, and ``p`` scaled with the
  warp: ``16 * 32 / 227 = 2.26`` px by default (``p = 16`` would leave nothing of a 32x32 warp);
- outside the image the paper fills the warp with the image mean; here samples more than half a pixel beyond
  the image's edge are 0, which after ``normalize`` is the dataset's mean (within half a pixel the border pixel
  extends, as RoIAlign does);
- a small CNN with batch norm trained from scratch, not ImageNet's AlexNet fine-tuned;
- the course's version of the heads: a softmax over ``K + 1`` classes and the class-specific box regression
  trained jointly with the CNN. The paper instead fine-tunes the CNN with a ``K + 1``-way softmax, then trains
  one linear SVM per class on fc7 features (hard negative mining) and a ridge regressor of the boxes on pool5
  features, none of them back-propagated into the CNN.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

from mlcv.ops.roi import roi_align

#: The paper's context and warp: 16 px around the box in a 227x227 warp.
PAPER_CONTEXT = 16.0
PAPER_WARP = 227


def default_context(warp_size: int) -> float:
    """The paper's ``p = 16`` of a 227-px warp scaled to ``warp_size``: the same fraction of the warp is context."""
    return PAPER_CONTEXT * warp_size / PAPER_WARP


def context_boxes(boxes: jax.Array, warp_size: int, context_pixels: float) -> jax.Array:
    """Boxes ``[..., 4]`` dilated so that, warped to ``warp_size``, ``context_pixels`` of context surround them.

    The original box fills the central ``S - 2p`` warped pixels, so each side grows by ``p / (S - 2p)`` of the
    box's own height (top, bottom) or width (left, right): a 40x20 box with ``S = 32``, ``p = 4`` grows by 6.67
    rows and 3.33 columns on each side. Needs ``2p < S``.
    """
    inner = warp_size - 2.0 * context_pixels
    if inner <= 0:
        raise ValueError(f"context of {context_pixels} px on each side leaves nothing of a {warp_size}-px warp")
    boxes = jnp.asarray(boxes, jnp.float32)
    grow_y = (boxes[..., 2] - boxes[..., 0]) * (context_pixels / inner)
    grow_x = (boxes[..., 3] - boxes[..., 1]) * (context_pixels / inner)
    return jnp.stack(
        [boxes[..., 0] - grow_y, boxes[..., 1] - grow_x, boxes[..., 2] + grow_y, boxes[..., 3] + grow_x], axis=-1
    )


def warp_regions(image: jax.Array, boxes: jax.Array, warp_size: int) -> jax.Array:
    """Each box ``[R, 4]`` of ``image [H, W, C]`` warped to ``[R, warp_size, warp_size, C]`` (bilinear).

    Output pixel ``(i, j)`` is the image sampled bilinearly at the point ``(i + 0.5) / S`` of the way down the box
    and ``(j + 0.5) / S`` across (pixel centres at ``k + 0.5``): :func:`mlcv.ops.roi.roi_align` with one sample
    a bin and ``aligned=True``. Height and width scale independently: the paper's anisotropic warp.
    """
    return roi_align(image, boxes, (warp_size, warp_size), spatial_scale=1.0, sampling_ratio=1, aligned=True)


def whole_image_rois(x: jax.Array) -> jax.Array:
    """One region per image, the whole image: ``[B, 1, 4]`` (the input of a model called without regions)."""
    b, h, w = x.shape[:3]
    return jnp.broadcast_to(jnp.array([0.0, 0.0, h, w], jnp.float32), (b, 1, 4))


class ConvStages(nn.Module):
    """Stages of 3x3 conv-BN-ReLU blocks, each ending in a 2x2 max pool but the last when ``pool_last`` is False.

    Fast R-CNN replaces the last max pool by RoIPool, hence ``pool_last=False`` there.
    """

    features: Sequence[int] = (32, 64, 128)
    convs_per_stage: int = 2
    pool_last: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        for s, width in enumerate(self.features):
            for c in range(self.convs_per_stage):
                x = nn.Conv(width, (3, 3), use_bias=False, name=f"stage{s}_conv{c}")(x)
                x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name=f"stage{s}_bn{c}")(x)
                x = nn.relu(x)
            if self.pool_last or s < len(self.features) - 1:
                x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
        return x


class BoxHead(nn.Module):
    """Fully connected layers (fc6, fc7) on flattened region features, then the two sibling outputs.

    ``__call__(features [N, ...])`` returns ``(class_logits [N, K + 1], box_deltas [N, K, 4])``. The outputs
    start as Fast R-CNN's: weights N(0, 0.01) for the classifier, N(0, 0.001) for the regressor, biases 0.
    """

    num_classes: int
    hidden: Sequence[int] = (256, 256)
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
        x = x.reshape((x.shape[0], -1))
        for i, units in enumerate(self.hidden):
            x = nn.relu(nn.Dense(units, name=f"fc{i + 6}")(x))
            x = nn.Dropout(self.dropout, deterministic=not train)(x)
        logits = nn.Dense(self.num_classes + 1, kernel_init=nn.initializers.normal(0.01), name="cls_score")(x)
        deltas = nn.Dense(4 * self.num_classes, kernel_init=nn.initializers.normal(0.001), name="bbox_pred")(x)
        return logits, deltas.reshape(x.shape[0], self.num_classes, 4)


def head_outputs(logits: jax.Array, deltas: jax.Array, b: int, r: int) -> dict[str, jax.Array]:
    """The heads' ``[B * R, ...]`` outputs as the ``[B, R, ...]`` dict of the R-CNN models, float32 (for bf16)."""
    return {
        "class_logits": logits.reshape(b, r, -1).astype(jnp.float32),
        "box_deltas": deltas.reshape(b, r, -1, 4).astype(jnp.float32),
    }


class RCNN(nn.Module):
    """Context, warp, CNN and heads for every region (see the module docstring).

    Attributes:
      num_classes: object classes ``K``; the classifier has ``K + 1`` outputs, background first.
      warp_size: side ``S`` of the warped regions (the paper's 227).
      context_pixels: ``p``, warped pixels of context around each box; None: :func:`default_context`.
      features: channels of the CNN's stages (each halves the warp: 32 -> 4 with three).
      convs_per_stage: 3x3 convolutions a stage.
      hidden: widths of the fully connected layers.
      dropout: drop rate after each fully connected layer (training only; the paper's 0.5).
    """

    num_classes: int
    warp_size: int = 32
    context_pixels: float | None = None
    features: Sequence[int] = (32, 64, 128)
    convs_per_stage: int = 2
    hidden: Sequence[int] = (256, 256)
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, rois: jax.Array | None = None, *, train: bool = False) -> dict[str, jax.Array]:
        """``rois [B, R, 4]`` in pixels of ``x [B, H, W, C]``; None: the whole image, one region an image."""
        rois = whole_image_rois(x) if rois is None else rois
        b, r = rois.shape[:2]
        p = default_context(self.warp_size) if self.context_pixels is None else float(self.context_pixels)
        boxes = context_boxes(rois, self.warp_size, p)
        crops = jax.vmap(partial(warp_regions, warp_size=self.warp_size))(x, boxes)  # [B, R, S, S, C]
        crops = crops.reshape(b * r, self.warp_size, self.warp_size, x.shape[-1])
        f = ConvStages(self.features, self.convs_per_stage, pool_last=True, name="cnn")(crops, train)
        logits, deltas = BoxHead(self.num_classes, self.hidden, self.dropout, name="head")(f, train)
        return head_outputs(logits, deltas, b, r)


#: A few thousand parameters, for tests: 16x16 warps, two 4-channel stages, one small fc layer.
RCNNTiny = partial(RCNN, warp_size=16, features=(4, 8), convs_per_stage=1, hidden=(16,))

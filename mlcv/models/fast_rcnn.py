"""Fast R-CNN (Girshick 2015): the CNN once per image, RoIPool of every region on its feature map (course §10.2).

The network only; regions, labels, the multi-task loss and decoding live in :mod:`mlcv.tasks.rcnn`.
``__call__(image [B, H, W, C], rois [B, R, 4])`` returns the outputs of :class:`mlcv.models.rcnn.RCNN`:
``class_logits [B, R, K + 1]`` (background first) and class-specific ``box_deltas [B, R, K, 4]``.

The same CNN (:class:`~mlcv.models.rcnn.ConvStages`) and fully connected head
(:class:`~mlcv.models.rcnn.BoxHead`) as the R-CNN model of this codebase, but, as the paper, the last max pool
is replaced by RoIPool (:func:`mlcv.ops.roi.roi_pool`): the convolutions run once on the whole image (stride
``2 ** (len(features) - 1)``, 4 with three stages: a 24x24 map of a 96x96 scene), and each region is
max-pooled to ``pool_size x pool_size`` cells of that map, the shape the R-CNN's last pool gives a warp
(32 / 8 = 4), so the two models share their head's shapes and differ only in where the regions are cut:
the image (R-CNN, with context) or the feature map (Fast R-CNN, no context but the receptive field's).

Departures from the paper: a small CNN with batch norm from scratch instead of an ImageNet VGG16; RoIPool
4x4 instead of 7x7 (a 20-40 px digit covers 5-10 cells of the stride-4 map); no truncated SVD of the fc layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import flax.linen as nn
import jax

from mlcv.models.rcnn import BoxHead, ConvStages, head_outputs, whole_image_rois
from mlcv.ops.roi import roi_pool


class FastRCNN(nn.Module):
    """The CNN on the image, RoIPool of each region, the fully connected head (see the module docstring).

    Attributes:
      num_classes: object classes ``K``; the classifier has ``K + 1`` outputs, background first.
      features: channels of the CNN's stages; all but the last end in a 2x2 max pool.
      convs_per_stage: 3x3 convolutions a stage.
      pool_size: RoIPool's output side (the paper's 7).
      hidden: widths of the fully connected layers (the paper's fc6, fc7 of 4096).
      dropout: drop rate after each fully connected layer (training only; the paper's 0.5).
    """

    num_classes: int
    features: Sequence[int] = (32, 64, 128)
    convs_per_stage: int = 2
    pool_size: int = 4
    hidden: Sequence[int] = (256, 256)
    dropout: float = 0.0

    @property
    def stride(self) -> int:
        """Input pixels per cell of the pooled feature map."""
        return 2 ** (len(self.features) - 1)

    @nn.compact
    def __call__(self, x: jax.Array, rois: jax.Array | None = None, *, train: bool = False) -> dict[str, jax.Array]:
        """``rois [B, R, 4]`` in pixels of ``x [B, H, W, C]``; None: the whole image, one region an image."""
        rois = whole_image_rois(x) if rois is None else rois
        b, r = rois.shape[:2]
        fmap = ConvStages(self.features, self.convs_per_stage, pool_last=False, name="cnn")(x, train)
        pool = partial(roi_pool, output_size=(self.pool_size, self.pool_size), spatial_scale=1.0 / self.stride)
        pooled = jax.vmap(pool)(fmap, rois)  # [B, R, P, P, C]
        pooled = pooled.reshape(b * r, self.pool_size, self.pool_size, fmap.shape[-1])
        logits, deltas = BoxHead(self.num_classes, self.hidden, self.dropout, name="head")(pooled, train)
        return head_outputs(logits, deltas, b, r)


#: A few thousand parameters, for tests: two 4/8-channel stages (stride 2), 2x2 RoIPool, one small fc layer.
FastRCNNTiny = partial(FastRCNN, features=(4, 8), convs_per_stage=1, pool_size=2, hidden=(16,))

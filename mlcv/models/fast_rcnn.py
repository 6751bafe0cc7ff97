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

RoIPool's backward is the paper's layer's (:func:`roi_pool_layer`): each bin's gradient goes to the cell that
gave its maximum (the first in row-major order on ties, as the Caffe loop's strict ``>``). Differentiating the
masked maxima of :func:`mlcv.ops.roi.roi_pool` instead builds ``[R, P, h, w, C]`` comparisons: forward and
backward of 16 images x 64 regions on a 24x24x128 map took 4.85 s that way, 0.50 s this way (2-core CPU).

Departures from the paper: a small CNN with batch norm from scratch instead of an ImageNet VGG16; RoIPool
4x4 instead of 7x7 (a 20-40 px digit covers 5-10 cells of the stride-4 map); regions clipped to the image
before pooling (proposals and boxes lie in it anyway); no truncated SVD of the fc layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

from mlcv.models.rcnn import BoxHead, ConvStages, head_outputs, whole_image_rois
from mlcv.ops.box_coding import clip_boxes
from mlcv.ops.roi import roi_pool


def _bin_cells(rois: jax.Array, shape: tuple[int, int], output_size: tuple[int, int], scale: float) -> tuple:
    """Each bin's cells ``[R, ph, pw]`` as ``(row_lo, row_hi, col_lo, col_hi)`` (hi exclusive; empty: lo >= hi).

    Read from :func:`mlcv.ops.roi.roi_pool` itself, pooling maps of the cell indices, so the bins are exactly
    its own: the maximum of ``row + 1`` is a bin's end, that of ``h - row`` gives its start; all are >= 1, so
    an empty bin's 0 gives an empty range.
    """
    h, w = shape
    rows, cols = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
    index = jnp.stack([rows + 1, h - rows, cols + 1, w - cols], axis=-1)
    e = roi_pool(index, rois, output_size, scale).astype(jnp.int32)
    return h - e[..., 1], e[..., 0], w - e[..., 3], e[..., 2]


def _argmax_cells(features: jax.Array, rois: jax.Array, output_size: tuple[int, int], scale: float) -> tuple:
    """The cell ``(row, col)`` ``[R, ph, pw, C]`` of each bin's maximum, and whether the bin is non-empty."""
    h, w, _ = features.shape
    y0, y1, x0, x1 = _bin_cells(rois, (h, w), output_size, scale)
    # A bin of a region inside the map spans at most ceil(h / ph) + 1 cells (Caffe's floor/ceil edges).
    ky = y0[..., None] + jnp.arange(min(h, -(-h // output_size[0]) + 1))  # [R, ph, pw, K]
    kx = x0[..., None] + jnp.arange(min(w, -(-w // output_size[1]) + 1))
    ok = (ky < y1[..., None])[..., :, None] & (kx < x1[..., None])[..., None, :]  # [R, ph, pw, Ky, Kx]
    ky, kx = jnp.clip(ky, 0, h - 1), jnp.clip(kx, 0, w - 1)
    patch = features[ky[..., :, None], kx[..., None, :]]  # [R, ph, pw, Ky, Kx, C]
    patch = jnp.where(ok[..., None], patch, -jnp.inf).reshape(*ok.shape[:3], -1, features.shape[-1])
    arg = jnp.argmax(patch, axis=3)  # the first maximum in row-major order
    size_x = kx.shape[-1]
    row = jnp.take_along_axis(ky, arg // size_x, axis=-1)
    col = jnp.take_along_axis(kx, arg % size_x, axis=-1)
    return row, col, ok.any(axis=(-1, -2))


@partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def roi_pool_layer(features: jax.Array, rois: jax.Array, output_size: tuple[int, int], scale: float) -> jax.Array:
    """:func:`mlcv.ops.roi.roi_pool` of one image ``features [h, w, C]``, with the backward of Fast R-CNN's layer.

    The forward pass is ``roi_pool`` itself. The backward sends each bin's gradient to the cell of its maximum
    (no gradient to the regions), where differentiating ``roi_pool`` would split it among tied cells: the same
    gradient when the maximum is unique. Regions must lie inside the map's image (see the module docstring).
    """
    return roi_pool(features, rois, output_size, scale)


def _roi_pool_fwd(features, rois, output_size, scale):
    return roi_pool(features, rois, output_size, scale), (features, rois)


def _roi_pool_bwd(output_size, scale, residuals, g):
    features, rois = residuals
    row, col, nonempty = _argmax_cells(features, rois, output_size, scale)
    g = jnp.where(nonempty[..., None], g, 0).astype(features.dtype)
    grad = jnp.zeros_like(features).at[row, col, jnp.arange(features.shape[-1])].add(g)
    return grad, jnp.zeros_like(rois)


roi_pool_layer.defvjp(_roi_pool_fwd, _roi_pool_bwd)


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
        rois = whole_image_rois(x) if rois is None else clip_boxes(rois, x.shape[1], x.shape[2])
        b, r = rois.shape[:2]
        fmap = ConvStages(self.features, self.convs_per_stage, pool_last=False, name="cnn")(x, train)
        size = (self.pool_size, self.pool_size)
        # One image at a time: RoIPool's masked maxima hold [R, P, h, w, C] (354 MB for 300 regions on a 24x24x128
        # map), which a vmap over the batch would multiply by B.
        pooled = jax.lax.map(lambda a: roi_pool_layer(*a, size, 1.0 / self.stride), (fmap, rois))  # [B, R, P, P, C]
        pooled = pooled.reshape(b * r, self.pool_size, self.pool_size, fmap.shape[-1])
        logits, deltas = BoxHead(self.num_classes, self.hidden, self.dropout, name="head")(pooled, train)
        return head_outputs(logits, deltas, b, r)


#: A few thousand parameters, for tests: two 4/8-channel stages (stride 2), 2x2 RoIPool, one small fc layer.
FastRCNNTiny = partial(FastRCNN, features=(4, 8), convs_per_stage=1, pool_size=2, hidden=(16,))

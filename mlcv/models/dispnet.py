"""DispNet-C (Mayer et al. 2016) and FlowNet-C (Dosovitskiy et al. 2015): correlation encoder-decoders.

Both networks share one layout:

- a siamese encoder, applied with shared weights to both images: ``conv1`` (7x7, stride 2, ``features``
  channels, 1/2 resolution) and ``conv2`` (5x5, stride 2, ``2 * features``, 1/4 resolution);
- a correlation layer at 1/4 resolution: :func:`mlcv.ops.cost_volume.correlation_1d` over disparities
  ``0..max_disparity`` for DispNet-C, :func:`mlcv.ops.cost_volume.correlation_2d` over displacements up to
  ``max_displacement`` (spacing ``corr_stride``) for FlowNet-C, both in pixels of that 1/4 resolution; its scores
  are concatenated with a 1x1 convolution of the first image's ``conv2`` features (``conv_redir``);
- a further encoder of ``depth`` levels, each a 3x3 stride-2 convolution and a 3x3 convolution (``conv{k}a``,
  ``conv{k}b``), doubling the channels from ``4 * features`` up to ``16 * features``;
- a decoder: a 3x3 convolution predicts the output (disparity: 1 channel, flow: 2 channels ``(dx, dy)``) at the
  coarsest level; then at every finer level down to 1/2 a 4x4 stride-2 transposed convolution (``upconv{k}``),
  concatenated with the first image's encoder features of that level (the skip) and the upsampled coarser
  prediction, a 3x3 convolution (``iconv{k}``) and a 3x3 prediction (``pr{k}``).

Predictions are in pixels of their own scale: passing one to a finer level upsamples it bilinearly and doubles
its values, and the full-resolution output is the finest (1/2) prediction upsampled the same way. All activations
are leaky ReLUs with slope 0.1, as in the papers; predictions are linear.

Scaled down from the papers (64 channels at conv1, correlation ranges 40 (DispNet, at 1/4) and 20 with stride 2
(FlowNet), 4 further levels to 1/64): ``features=16``, ``max_disparity=10`` (40 full-resolution pixels),
``max_displacement=4`` with ``corr_stride=1`` (81 channels), ``depth=3`` (coarsest 1/32, 2x4 for 64x128 inputs);
3x3 instead of 5x5 kernels after the correlation. Parameter-free prediction upsampling instead of the papers'
learned 1-channel up-convolutions. No batch normalization (the papers have none). H and W must be divisible by
``2 ** (depth + 2)``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

from mlcv.ops import cost_volume


def _lrelu(x: jax.Array) -> jax.Array:
    return nn.leaky_relu(x, 0.1)


def upsample_prediction(pred: jax.Array, height: int, width: int) -> jax.Array:
    """Bilinear resize of a ``[B, h, w, C]`` displacement map to ``[B, height, width, C]``, values rescaled.

    Channel 0 is a horizontal displacement (scaled by ``width / w``), channel 1 a vertical one (``height / h``).
    """
    b, h, w, c = pred.shape
    out = jax.image.resize(pred, (b, height, width, c), method="bilinear")
    scale = jnp.array([width / w, height / h][:c], dtype=pred.dtype)
    return out * scale


class CorrelationNet(nn.Module):
    """The shared DispNet-C / FlowNet-C body: siamese encoder, correlation, encoder, multi-scale decoder.

    Attributes:
      correlate: ``(feat1, feat2) -> [B, h, w, K]`` scores at 1/4 resolution.
      out_channels: prediction channels (1 for disparity, 2 for flow).
      features: channels of ``conv1``.
      depth: stride-2 levels after the correlation; the coarsest prediction is at ``1 / 2 ** (depth + 2)``.

    Returns from ``__call__(image1, image2)`` the predictions ``[B, h, w, out_channels]`` coarse-to-fine, from
    ``1 / 2 ** (depth + 2)`` to 1/2 resolution, in pixels of their own scale.
    """

    correlate: Callable[[jax.Array, jax.Array], jax.Array]
    out_channels: int
    features: int = 16
    depth: int = 3

    @nn.compact
    def __call__(self, image1: jax.Array, image2: jax.Array) -> tuple[jax.Array, ...]:
        if image1.ndim != 4 or image1.shape != image2.shape:
            raise ValueError(f"expected two [B, H, W, C] images of one shape, got {image1.shape}, {image2.shape}")
        factor = 2 ** (self.depth + 2)
        if image1.shape[1] % factor or image1.shape[2] % factor:
            raise ValueError(f"H and W ({image1.shape[1:3]}) must be divisible by 2 ** (depth + 2) = {factor}")
        c = self.features
        conv1 = nn.Conv(c, (7, 7), strides=(2, 2), name="conv1")
        conv2 = nn.Conv(2 * c, (5, 5), strides=(2, 2), name="conv2")
        left1 = _lrelu(conv1(image1))
        left2 = _lrelu(conv2(left1))
        right2 = _lrelu(conv2(_lrelu(conv1(image2))))
        corr = _lrelu(self.correlate(left2, right2))
        redir = _lrelu(nn.Conv(c, (1, 1), name="conv_redir")(left2))
        x = jnp.concatenate([corr, redir], axis=-1)
        skips = [left1, left2]  # level 1 (1/2), level 2 (1/4)
        for i in range(self.depth):
            level = i + 3
            width = min(4 * c * 2**i, 16 * c)
            x = _lrelu(nn.Conv(width, (3, 3), strides=(2, 2), name=f"conv{level}a")(x))
            x = _lrelu(nn.Conv(width, (3, 3), name=f"conv{level}b")(x))
            skips.append(x)
        coarsest = self.depth + 2
        pred = nn.Conv(self.out_channels, (3, 3), name=f"pr{coarsest}")(x)
        preds = [pred]
        for level in reversed(range(1, coarsest)):
            skip = skips[level - 1]
            up = _lrelu(nn.ConvTranspose(skip.shape[-1], (4, 4), strides=(2, 2), name=f"upconv{level}")(x))
            pred_up = upsample_prediction(pred, skip.shape[1], skip.shape[2])
            x = jnp.concatenate([up, skip, pred_up], axis=-1)
            x = _lrelu(nn.Conv(skip.shape[-1], (3, 3), name=f"iconv{level}")(x))
            pred = nn.Conv(self.out_channels, (3, 3), name=f"pr{level}")(x)
            preds.append(pred)
        return tuple(preds)


class DispNetC(nn.Module):
    """DispNet-C: left-view disparity of a rectified pair, at several scales.

    Attributes:
      max_disparity: the correlation's largest disparity, in pixels of its 1/4 resolution (40 in the paper);
        covers ``4 * max_disparity`` input pixels.
      features: channels of ``conv1`` (64 in the paper).
      depth: stride-2 levels after the correlation (4 in the paper).
    """

    max_disparity: int = 10
    features: int = 16
    depth: int = 3

    @nn.compact
    def __call__(self, left: jax.Array, right: jax.Array, *, train: bool = False) -> dict:
        """``left, right``: ``[B, H, W, C]``. Returns ``{"disparity": [B, H, W], "disparities": (...)}``.

        ``disparity`` is in input pixels (the finest prediction, at 1/2, upsampled and doubled); ``disparities``
        are ``[B, h, w]`` coarse-to-fine from ``1 / 2 ** (depth + 2)`` to 1/2, each in pixels of its own scale.
        """
        del train
        correlate = partial(cost_volume.correlation_1d, max_disparity=self.max_disparity)
        preds = CorrelationNet(correlate, 1, self.features, self.depth, name="net")(left, right)
        full = upsample_prediction(preds[-1], left.shape[1], left.shape[2])
        return {"disparity": full[..., 0], "disparities": tuple(p[..., 0] for p in preds)}


class FlowNetC(nn.Module):
    """FlowNet-C: optical flow ``(dx, dy)`` from ``image`` to ``image_next``, at several scales.

    Attributes:
      max_displacement: the correlation's largest ``|dx|``, ``|dy|``, in pixels of its 1/4 resolution (20).
      corr_stride: spacing of the correlation's displacements (2 in the paper).
      features: channels of ``conv1`` (64 in the paper).
      depth: stride-2 levels after the correlation (4 in the paper).
    """

    max_displacement: int = 4
    corr_stride: int = 1
    features: int = 16
    depth: int = 3

    @nn.compact
    def __call__(self, image: jax.Array, image_next: jax.Array, *, train: bool = False) -> dict:
        """``image, image_next``: ``[B, H, W, C]``. Returns ``{"flow": [B, H, W, 2], "flows": (...)}``.

        ``flow`` is in input pixels; ``flows`` are ``[B, h, w, 2]`` coarse-to-fine from ``1 / 2 ** (depth + 2)``
        to 1/2, each in pixels of its own scale.
        """
        del train
        correlate = partial(cost_volume.correlation_2d, max_displacement=self.max_displacement, stride=self.corr_stride)
        preds = CorrelationNet(correlate, 2, self.features, self.depth, name="net")(image, image_next)
        return {"flow": upsample_prediction(preds[-1], image.shape[1], image.shape[2]), "flows": preds}


#: For tests: 4 channels, one level after the correlation (predictions at 1/8, 1/4, 1/2).
DispNetTiny = partial(DispNetC, max_disparity=3, features=4, depth=1)
#: For tests: 4 channels, one level after the correlation (predictions at 1/8, 1/4, 1/2).
FlowNetTiny = partial(FlowNetC, max_displacement=2, features=4, depth=1)

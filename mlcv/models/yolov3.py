"""YOLOv3 (Redmon & Farhadi 2018, "YOLOv3: An Incremental Improvement"): predictions at three scales.

The network only: priors, assignment, the losses and decoding live in :mod:`mlcv.tasks.yolov3`.

- Backbone: a plain stack of stride-2 residual stages (CenterNet's ``_Residual`` block, as in
  :mod:`mlcv.models.centernet` and :mod:`mlcv.models.retinanet`); stage ``i`` (from 1) has stride ``2 ** i``.
  The paper's Darknet-53 is the same idea (residual blocks, strided 3x3 convolutions instead of pooling) at
  53 layers; on 96x96 scenes a few thousand images long this small stack trains in minutes on a CPU.
- Three scales, the outputs of the last three stages: strides 8, 16, 32 with five stages (12x12, 6x6 and 3x3
  cells on a 96x96 image).
- Top-down path (the paper's "we take the feature map from 2 layers previous and upsample it by 2x ... and
  merge it with our upsampled features using concatenation"): at the coarsest scale a block of convolutions
  (``1x1 f, 3x3 2f, 1x1 f``; the paper's five alternate 1x1/3x3 layers); its output goes through a 1x1
  convolution to the next finer scale's ``f`` channels (Darknet: 512 to 256, then 256 to 128), is upsampled
  (nearest, x2) and CONCATENATED with the finer stage's features, and the finer scale's block starts from
  that. Concatenation, not the sum of an FPN (:mod:`mlcv.models.retinanet`): the finer scale sees the coarse
  semantics and its own features side by side and learns how to mix them.
- Per scale an output branch: a 3x3 convolution to ``2f`` channels, then a 1x1 convolution to
  ``A * (5 + K)`` channels: for each of the scale's ``A`` priors the box ``(t_y, t_x, t_h, t_w)``, the
  objectness logit and ``K`` class logits (independent sigmoids, the paper's multilabel classification).
  Convolutions other than the outputs carry batch norm and leaky ReLU (slope 0.1), as Darknet.

Departures from the paper: the backbone above instead of Darknet-53; the box is stored y-first,
``(t_y, t_x, t_h, t_w)`` (the ``(y, x)`` order of every mlcv box) where the paper writes ``(t_x, t_y, t_w,
t_h)``; the objectness bias starts at the prior ``-log((1 - pi) / pi)``, ``pi = 0.01`` (RetinaNet's prior;
the paper does not say, Darknet starts it at 0), so that the ~560 background predictions an image do not
swamp the first steps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

from mlcv.models.centernet import _Residual

#: The objectness prior pi: every prediction starts with object probability 0.01.
OBJECTNESS_PRIOR = 0.01


class _ConvBN(nn.Module):
    """Convolution, batch norm and leaky ReLU (0.1): Darknet's layer."""

    features: int
    kernel: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = nn.Conv(self.features, (self.kernel, self.kernel), use_bias=False)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        return nn.leaky_relu(x, 0.1)


class YOLOv3(nn.Module):
    """Backbone, top-down path by concatenation and one output branch per scale (see the module docstring).

    ``__call__(image [B, H, W, C])`` returns ``{"box": [B, N, 4] (t_y, t_x, t_h, t_w), "objectness": [B, N]
    logits, "class_logits": [B, N, num_classes]}`` with ``N = sum_s h_s w_s num_anchors``, ordered scale by
    scale (finest, stride 8, first), then cells row-major, then the scale's priors: the ``(h_s, w_s)`` of
    :func:`mlcv.models.retinanet.level_shapes` on :attr:`strides`.

    Attributes:
      num_classes: object classes ``K``.
      num_anchors: priors ``A`` per cell of each scale (the paper's 3).
      stage_features: channels of each stride-2 stage; the last three are the scales (at least 3 stages).
      blocks_per_stage: residual blocks per stage.
      head_features: ``f`` of each scale's block, finest first (the paper's 128, 256, 512).
    """

    num_classes: int
    num_anchors: int = 3
    stage_features: Sequence[int] = (32, 64, 96, 128, 128)
    blocks_per_stage: int = 1
    head_features: Sequence[int] = (64, 64, 64)

    @property
    def strides(self) -> tuple[int, ...]:
        """The stride of each scale, finest first: the last three stages'."""
        n = len(self.stage_features)
        return tuple(2**level for level in range(n - 2, n + 1))

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> dict[str, jax.Array]:
        if len(self.stage_features) < 3 or len(self.head_features) != 3:
            raise ValueError(
                f"YOLOv3: needs at least 3 stages (got {len(self.stage_features)}) and 3 head_features "
                f"(got {len(self.head_features)})"
            )
        feats = []
        for i, f in enumerate(self.stage_features):
            x = _Residual(f, stride=2, name=f"stage{i + 1}_0")(x, train)
            for j in range(1, self.blocks_per_stage):
                x = _Residual(f, name=f"stage{i + 1}_{j}")(x, train)
            feats.append(x)
        outs = {}
        y = None
        for scale in (2, 1, 0):  # coarsest first: the top-down path
            c = feats[len(feats) - 3 + scale]
            f = self.head_features[scale]
            if y is not None:
                y = _ConvBN(f, 1, name=f"route{scale}")(y, train)
                b, h, w, ch = y.shape
                up = jax.image.resize(y, (b, 2 * h, 2 * w, ch), "nearest")[:, : c.shape[1], : c.shape[2]]
                c = jnp.concatenate([up, c], axis=-1)
            y = _ConvBN(f, 1, name=f"block{scale}_0")(c, train)
            y = _ConvBN(2 * f, 3, name=f"block{scale}_1")(y, train)
            y = _ConvBN(f, 1, name=f"block{scale}_2")(y, train)
            z = _ConvBN(2 * f, 3, name=f"branch{scale}")(y, train)
            out = nn.Conv(
                self.num_anchors * (5 + self.num_classes), (1, 1), bias_init=self._bias, name=f"output{scale}"
            )
            outs[scale] = out(z)
        rows = []
        for scale in (0, 1, 2):
            o = outs[scale]
            b, h, w, _ = o.shape
            rows.append(o.reshape(b, h * w * self.num_anchors, 5 + self.num_classes))
        # Losses in float32 under bf16.
        raw = jnp.concatenate(rows, axis=1).astype(jnp.float32)
        return {"box": raw[..., :4], "objectness": raw[..., 4], "class_logits": raw[..., 5:]}

    def _bias(self, key: jax.Array, shape: Sequence[int], dtype: jnp.dtype = jnp.float32) -> jax.Array:
        """Output biases: 0, except each prior's objectness at ``-log((1 - pi) / pi)``."""
        del key
        prior = -math.log((1 - OBJECTNESS_PRIOR) / OBJECTNESS_PRIOR)
        return jnp.zeros((self.num_anchors, 5 + self.num_classes), dtype).at[:, 4].set(prior).reshape(shape)


#: A few thousand parameters, for tests: 8-channel stages and blocks.
YOLOv3Tiny = partial(YOLOv3, stage_features=(8, 8, 8, 8, 8), head_features=(8, 8, 8))

"""GC-Net (Kendall et al. 2017): geometry and context through 3-D convolutions on a concatenation cost volume.

- Unary features: a 5x5 stride-2 convolution (1/2 resolution) then ``num_res_blocks`` residual blocks of two 3x3
  convolutions, and a last 3x3 convolution without normalization or ReLU; shared by both views.
- Cost volume: :func:`mlcv.ops.cost_volume.concat_cost_volume` at 1/2 resolution with ``max_disparity / 2``
  levels (1/2-resolution disparities ``0 .. max_disparity / 2 - 1``): ``[B, D/2, H/2, W/2, 2 * features]``.
- 3-D regularisation: two 3x3x3 convolutions at 1/2, then ``depth`` levels, each a 3x3x3 stride-2 convolution
  (disparity, height and width all halve) and two 3x3x3 convolutions; back up by 3x3x3 stride-2 transposed
  convolutions, each added to the encoder's features of that level (the paper's residual skips).
- The costs ``[B, D, H, W]`` at full resolution and ``D = max_disparity`` full-resolution levels: by default a
  3x3x3 convolution to one channel at 1/2 and trilinear upsampling (2x in disparity, height and width); with
  ``transpose_final=True`` the paper's 3x3x3 stride-2 transposed convolution (learned upsampling; about 3x slower
  per train step on XLA's CPU backend, whose 3-D transposed convolutions are slow). The disparity is their soft
  argmin over ``D`` (:func:`mlcv.ops.cost_volume.soft_argmin`): ``sum_d d * softmax(-costs)_d``, so in
  ``[0, max_disparity - 1]`` input pixels. The final convolution has no bias: a constant added to all costs
  would not change the softmax.

Every convolution but the last of the unary features and the final transposed one is followed by batch
normalization (``batch_norm=True``; the convolutions then have no bias) and a ReLU, as in the paper.

Scaled down from the paper (32 unary features, 8 residual blocks, 3-D widths 32/64/64/64/128 over 4 levels,
D = 192): ``features=16``, ``num_res_blocks=2``, 3-D widths 8, 16, 32 (``volume_features=8``) over ``depth=2``
levels; a train step on a batch of four 64x128 pairs with D = 32 takes about 2 s on a 2-core CPU.
``max_disparity / 2`` and H/2, W/2 must be divisible by ``2 ** depth``.
"""

from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax

from mlcv.ops import cost_volume

_HE_INIT = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


class _ConvBN(nn.Module):
    """Convolution (2-D or 3-D by ``kernel`` length, optionally transposed), batch norm (optional), ReLU."""

    features: int
    kernel: tuple[int, ...]
    strides: int = 1
    transpose: bool = False
    batch_norm: bool = True
    relu: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        layer = nn.ConvTranspose if self.transpose else nn.Conv
        strides = (self.strides,) * len(self.kernel)
        x = layer(self.features, self.kernel, strides=strides, use_bias=not self.batch_norm, kernel_init=_HE_INIT,
                  name="conv")(x)  # fmt: skip
        if self.batch_norm:
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name="bn")(x)
        return nn.relu(x) if self.relu else x


class UnaryFeatures(nn.Module):
    """GC-Net's shared 2-D feature extractor: ``[B, H, W, C]`` -> ``[B, H/2, W/2, features]``."""

    features: int = 16
    num_res_blocks: int = 2
    batch_norm: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        block = partial(_ConvBN, batch_norm=self.batch_norm)
        x = block(self.features, (5, 5), strides=2, name="conv0")(x, train=train)
        for i in range(self.num_res_blocks):
            y = block(self.features, (3, 3), name=f"res{i}_a")(x, train=train)
            y = block(self.features, (3, 3), relu=False, name=f"res{i}_b")(y, train=train)
            x = nn.relu(x + y)
        return nn.Conv(self.features, (3, 3), name="last")(x)


class GCNet(nn.Module):
    """GC-Net: soft-argmin disparity of the left view from a rectified pair.

    Attributes:
      max_disparity: ``D``, the number of full-resolution disparity levels (192 in the paper); even, and
        ``D / 2`` divisible by ``2 ** depth``. Disparities lie in ``[0, D - 1]``.
      features: unary feature channels (32 in the paper); the cost volume has ``2 * features``.
      volume_features: 3-D convolution channels at 1/2 resolution (32 in the paper); level ``i`` of the 3-D encoder
        has ``volume_features * 2**i``.
      num_res_blocks: residual blocks in the unary features (8 in the paper).
      depth: stride-2 levels of the 3-D encoder (4 in the paper).
      batch_norm: batch normalization after the convolutions (the paper has it).
      transpose_final: the paper's final 3x3x3 stride-2 transposed convolution to full resolution; the default
        (False) is a 3x3x3 convolution at 1/2 then trilinear upsampling of the costs (see the module docstring).
    """

    max_disparity: int = 32
    features: int = 16
    volume_features: int = 8
    num_res_blocks: int = 2
    depth: int = 2
    batch_norm: bool = True
    transpose_final: bool = False

    @nn.compact
    def __call__(self, left: jax.Array, right: jax.Array, *, train: bool = False) -> dict:
        """``left, right``: ``[B, H, W, C]``. Returns ``{"disparity": [B, H, W], "costs": [B, D, H, W]}``.

        ``disparity`` is in input pixels, ``soft_argmin(costs, axis=1)``; lower costs are better matches.
        """
        if left.ndim != 4 or left.shape != right.shape:
            raise ValueError(f"GCNet: expected two [B, H, W, C] images of one shape, got {left.shape}, {right.shape}")
        factor = 2 ** (self.depth + 1)
        if self.max_disparity % factor or left.shape[1] % factor or left.shape[2] % factor:
            raise ValueError(
                f"GCNet: max_disparity ({self.max_disparity}), H and W ({left.shape[1:3]}) must be divisible by "
                f"2 ** (depth + 1) = {factor}"
            )
        unary = UnaryFeatures(self.features, self.num_res_blocks, self.batch_norm, name="unary")
        fl, fr = unary(left, train=train), unary(right, train=train)
        x = cost_volume.concat_cost_volume(fl, fr, self.max_disparity // 2 - 1)  # [B, D/2, H/2, W/2, 2F]
        block = partial(_ConvBN, kernel=(3, 3, 3), batch_norm=self.batch_norm)
        x = block(self.volume_features, name="conv3d_0a")(x, train=train)
        x = block(self.volume_features, name="conv3d_0b")(x, train=train)
        skips = [x]
        for i in range(1, self.depth + 1):
            width = self.volume_features * 2**i
            x = block(width, strides=2, name=f"down{i}")(x, train=train)
            x = block(width, name=f"conv3d_{i}a")(x, train=train)
            x = block(width, name=f"conv3d_{i}b")(x, train=train)
            skips.append(x)
        for i in reversed(range(self.depth)):
            x = block(self.volume_features * 2**i, strides=2, transpose=True, name=f"up{i}")(x, train=train) + skips[i]
        b, d, h, w, _ = x.shape
        if self.transpose_final:
            costs = nn.ConvTranspose(1, (3, 3, 3), strides=(2, 2, 2), use_bias=False, name="final")(x)[..., 0]
        else:
            costs = nn.Conv(1, (3, 3, 3), use_bias=False, name="final")(x)[..., 0]
            costs = jax.image.resize(costs, (b, 2 * d, 2 * h, 2 * w), method="trilinear")
        return {"disparity": cost_volume.soft_argmin(costs, axis=1), "costs": costs}


#: For tests: 4 unary and 3-D features, one residual block, one 3-D level, 8 disparity levels.
GCNetTiny = partial(GCNet, max_disparity=8, features=4, volume_features=4, num_res_blocks=1, depth=1)

"""CenterNet (Zhou et al. 2019, "Objects as Points"): dense heads at output stride R on a small encoder-decoder.

The network predicts, at every cell of a grid ``R`` times coarser than the image, one heatmap logit per
class (is an object's centre here?), the object's height and width, and the sub-cell offset of the centre
lost by the stride. Decoding (peaks, boxes) lives in :mod:`mlcv.tasks.centernet`; this module is only the
network.

The paper puts its heads on a stacked hourglass, a DLA-34 or a ResNet with deconvolutions, all at stride 4.
Here the encoder is a plain stack of stride-2 residual stages and the decoder brings the coarsest features
back to stride ``4`` by nearest upsampling, adding the encoder's feature map of the same stride through a
1x1 lateral convolution at each step: the top-down path of a feature pyramid (the paper's DLA "iterative
deep aggregation" is another way of merging the same strides). A 96x96 scene thus gives 24x24 cells, and
the deepest stage sees about 100 px, more than the largest digit (40 px).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# Heatmap bias so that sigmoid(bias) = 0.1 at the start: nearly every cell is background, and an initial
# 0.5 everywhere would give the focal loss a huge first gradient (the paper and RetinaNet's prior pi).
HEATMAP_PRIOR = 0.1


class _Residual(nn.Module):
    """Two 3x3 convolutions with batch norm and a projected shortcut when the shape changes."""

    features: int
    stride: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        norm = partial(nn.BatchNorm, use_running_average=not train, momentum=0.9)
        s = (self.stride, self.stride)
        y = nn.Conv(self.features, (3, 3), strides=s, use_bias=False)(x)
        y = nn.relu(norm()(y))
        y = nn.Conv(self.features, (3, 3), use_bias=False)(y)
        y = norm(scale_init=nn.initializers.zeros)(y)  # each block starts as the identity
        if x.shape[-1] != self.features or self.stride != 1:
            x = norm()(nn.Conv(self.features, (1, 1), strides=s, use_bias=False)(x))
        return nn.relu(x + y)


class CenterNet(nn.Module):
    """Encoder, top-down decoder to stride ``output_stride``, and three heads.

    ``__call__(image [B, H, W, C])`` returns ``{"heatmap": [B, h, w, num_classes] logits, "size": [B, h, w, 2]
    (height, width in cells), "offset": [B, h, w, 2] (y, x in cells)}`` with ``h = H / output_stride``. ``H``
    and ``W`` must be divisible by ``2 ** len(stage_features)``.

    Attributes:
      num_classes: object classes (no background class: a cell's classes are independent sigmoids).
      stage_features: channels of each stride-2 stage; stage ``i`` has stride ``2 ** (i + 1)``.
      blocks_per_stage: residual blocks per stage.
      decoder_features: channels of the top-down path and of each head's hidden layer.
      output_stride: the stride ``R`` of the heads, a power of two, at most the deepest stage's stride.
    """

    num_classes: int
    stage_features: Sequence[int] = (32, 64, 96, 128)
    blocks_per_stage: int = 1
    decoder_features: int = 64
    output_stride: int = 4

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> dict[str, jax.Array]:
        depth = len(self.stage_features)
        out_level = int(np.log2(self.output_stride))
        if 2**out_level != self.output_stride or not 1 <= out_level <= depth:
            raise ValueError(f"CenterNet: output_stride {self.output_stride} must be 2**k with 1 <= k <= {depth}")
        if x.shape[1] % 2**depth or x.shape[2] % 2**depth:
            raise ValueError(f"CenterNet: input {x.shape[1]}x{x.shape[2]} is not divisible by {2**depth}")
        feats = []
        for i, f in enumerate(self.stage_features):
            x = _Residual(f, stride=2, name=f"stage{i + 1}_0")(x, train)
            for j in range(1, self.blocks_per_stage):
                x = _Residual(f, name=f"stage{i + 1}_{j}")(x, train)
            feats.append(x)
        y = nn.Conv(self.decoder_features, (1, 1), name=f"lateral{depth}")(feats[-1])
        for level in range(depth - 1, out_level - 1, -1):  # stage numbers: stride 2 ** level
            b, h, w, c = y.shape
            y = jax.image.resize(y, (b, 2 * h, 2 * w, c), "nearest")
            y = y + nn.Conv(self.decoder_features, (1, 1), name=f"lateral{level}")(feats[level - 1])
        norm = partial(nn.BatchNorm, use_running_average=not train, momentum=0.9)
        y = nn.relu(norm(name="merge_bn")(nn.Conv(self.decoder_features, (3, 3), use_bias=False, name="merge")(y)))
        prior = float(np.log(HEATMAP_PRIOR / (1 - HEATMAP_PRIOR)))
        outputs = {}
        for head, n, bias in (("heatmap", self.num_classes, prior), ("size", 2, 0.0), ("offset", 2, 0.0)):
            z = nn.relu(nn.Conv(self.decoder_features, (3, 3), name=f"{head}_hidden")(y))
            outputs[head] = nn.Conv(n, (1, 1), bias_init=nn.initializers.constant(bias), name=head)(z)
        outputs = {k: v.astype(jnp.float32) for k, v in outputs.items()}  # losses in float32 under bf16
        return outputs


#: A few thousand parameters, for tests.
CenterNetTiny = partial(CenterNet, stage_features=(8, 8, 8), decoder_features=8, output_stride=4)

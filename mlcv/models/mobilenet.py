"""MobileNet v1 (Howard et al. 2017, Table 1): depthwise-separable convolutions with a width multiplier.

Stem: 3x3/2 conv with 32 channels; then 13 blocks of depthwise 3x3 (one filter per channel,
``feature_group_count`` = channels) + BN + ReLU and pointwise 1x1 + BN + ReLU; global average pooling; fc.
Convolutions have no bias (BN follows). Parameters at width 1.0 and 1000 classes: 4,231,976 (the paper's 4.2 M).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

# (pointwise output channels, depthwise stride) of each depthwise-separable block.
BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    *((512, 1),) * 5,
    (1024, 2),
    (1024, 1),
)

_CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _norm(train: bool, name: str) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)


class DepthwiseSeparable(nn.Module):
    """Depthwise 3x3 conv (stride ``strides``) + BN + ReLU, then pointwise 1x1 conv to ``features`` + BN + ReLU."""

    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        channels = x.shape[-1]
        s = (self.strides, self.strides)
        x = nn.Conv(
            channels,
            (3, 3),
            strides=s,
            padding=((1, 1), (1, 1)),
            feature_group_count=channels,
            use_bias=False,
            kernel_init=_CONV_INIT,
            name="dw_conv",
        )(x)
        x = nn.relu(_norm(train, "dw_bn")(x))
        x = nn.Conv(self.features, (1, 1), use_bias=False, kernel_init=_CONV_INIT, name="pw_conv")(x)
        return nn.relu(_norm(train, "pw_bn")(x))


class MobileNetV1(nn.Module):
    """MobileNet v1.

    Attributes:
      num_classes: number of output scores.
      width: the width multiplier alpha; every layer has ``int(channels * width)`` channels (at least 1).
      dropout: drop rate before the classifier (training only; the paper uses none).
    """

    num_classes: int
    width: float = 1.0
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        def ch(c: int) -> int:
            return max(1, int(c * self.width))

        x = nn.Conv(
            ch(32),
            (3, 3),
            strides=(2, 2),
            padding=((1, 1), (1, 1)),
            use_bias=False,
            kernel_init=_CONV_INIT,
            name="stem_conv",
        )(x)
        x = nn.relu(_norm(train, "stem_bn")(x))
        for i, (features, strides) in enumerate(BLOCKS):
            x = DepthwiseSeparable(ch(features), strides, name=f"block{i}")(x, train=train)
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.num_classes, name="head")(x)

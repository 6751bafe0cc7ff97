"""A small VGG-style CNN for low-resolution images (digits, MNIST, CIFAR)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import flax.linen as nn
import jax


class SmallCNN(nn.Module):
    """Stages of 3x3 conv-norm-ReLU blocks, each stage ending in 2x2 max pooling.

    Attributes:
      num_classes: number of output scores.
      features: channels of each stage.
      convs_per_stage: 3x3 convolutions per stage.
      dense: width of the hidden fully connected layer (0 for none).
      dropout: drop rate before the classifier (training only).
      norm: the normalization after each convolution: "batch" (statistics of each channel over the batch and
        the positions; moving averages at test), "layer" (the course's layer normalization, section 6.2: the mean
        and variance of each example over all the units of the layer, H x W x C, the same in training and at
        test, then a scale and a shift per channel) or "none".
    """

    num_classes: int
    features: Sequence[int] = (32, 64)
    convs_per_stage: int = 2
    dense: int = 128
    dropout: float = 0.0
    norm: Literal["batch", "layer", "none"] = "batch"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        for s, width in enumerate(self.features):
            for c in range(self.convs_per_stage):
                # Batch norm removes a per-channel bias; layer norm subtracts one mean over all channels, so the
                # convolution keeps its bias there.
                x = nn.Conv(width, (3, 3), use_bias=self.norm != "batch", name=f"stage{s}_conv{c}")(x)
                if self.norm == "batch":
                    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name=f"stage{s}_bn{c}")(x)
                elif self.norm == "layer":
                    x = nn.LayerNorm(epsilon=1e-5, reduction_axes=(-3, -2, -1), name=f"stage{s}_ln{c}")(x)
                x = nn.relu(x)
            x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
        x = x.reshape((x.shape[0], -1))
        if self.dense:
            x = nn.relu(nn.Dense(self.dense, name="fc")(x))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.num_classes, name="head")(x)

"""VGG networks (Simonyan & Zisserman 2015), configurations A, B, D and E (VGG-11/13/16/19).

Every convolution is 3x3 with padding 1 and ReLU; "M" is a 2x2 stride-2 max-pooling. The classifier is
fc 4096 -> dropout -> fc 4096 -> dropout -> fc num_classes, ``Dense`` layers on the flattened last feature map (no
adaptive pooling): the input size fixes the first fc layer's fan-in and the parameter count (224x224 -> 7x7x512).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import flax.linen as nn
import jax

# Table 1 of the paper; the configurations with LRN (A-LRN) and 1x1 convolutions (C) are left out.
CONFIGS: dict[str, tuple[int | str, ...]] = {
    "A": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "B": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "D": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "E": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}


def conv_stages(
    x: jax.Array, config: Sequence[int | str], *, batch_norm: bool, train: bool
) -> tuple[jax.Array, list[jax.Array]]:
    """VGG's convolutional part, to call inside a compact module: ``(output, [the output of every pooling])``.

    Convolutions are named ``conv{i}`` (and ``bn{i}``) in the calling module, so that every network built on
    it (VGG, FCN) shares the parameter names and a classifier's weights load into a segmenter as they are.
    """
    pools = []
    i = 0
    for layer in config:
        if layer == "M":
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
            pools.append(x)
            continue
        x = nn.Conv(int(layer), (3, 3), padding=((1, 1), (1, 1)), use_bias=not batch_norm, name=f"conv{i}")(x)
        if batch_norm:
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name=f"bn{i}")(x)
        x = nn.relu(x)
        i += 1
    return x, pools


class VGG(nn.Module):
    """A VGG network.

    Attributes:
      num_classes: number of output scores.
      config: layer list, channel counts and "M" for max-pooling (see ``CONFIGS``).
      batch_norm: batch normalization after each convolution (the convolutions then have no bias; the paper's
        networks have none).
      hidden: width of the two hidden fully connected layers.
      dropout: drop rate before the second and third fc layers (training only).
    """

    num_classes: int
    config: Sequence[int | str] = CONFIGS["D"]
    batch_norm: bool = False
    hidden: int = 4096
    dropout: float = 0.5

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        x, _ = conv_stages(x, self.config, batch_norm=self.batch_norm, train=train)
        x = x.reshape((x.shape[0], -1))
        for name in ("fc0", "fc1"):
            x = nn.relu(nn.Dense(self.hidden, name=name)(x))
            x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.num_classes, name="head")(x)


VGG11 = partial(VGG, config=CONFIGS["A"])
VGG13 = partial(VGG, config=CONFIGS["B"])
VGG16 = partial(VGG, config=CONFIGS["D"])
VGG19 = partial(VGG, config=CONFIGS["E"])

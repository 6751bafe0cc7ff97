"""GoogLeNet / Inception v1 (Szegedy et al. 2015, Table 1), without the two auxiliary classifiers.

Stem: conv 7x7/2 64 -> max-pool 3/2 -> conv 1x1 64 -> conv 3x3 192 -> max-pool 3/2; inception modules 3a, 3b,
max-pool 3/2, 4a-4e, max-pool 3/2, 5a, 5b; global average pooling; dropout 0.4; fc num_classes. Each module
concatenates four branches: 1x1; 1x1 reduce -> 3x3; 1x1 reduce -> 5x5; 3x3/1 max-pool -> 1x1 projection. Every
convolution has a bias and a ReLU, as in the paper; the paper's two LRN layers in the stem are left out (they are
not in its Table 1 and not in its parameter count) and so are the auxiliary classifiers, which only add training
losses. Pooling uses "SAME" padding so 224x224 inputs give the table's 112/56/28/14/7 maps.

Parameters: 6,998,552 with 1000 classes (the paper's Table 1 sums to about 6.8 M: it leaves out the biases and
rounds the per-layer counts; the final fc alone is 1,025,000 with its bias). The count does not depend on the input
size (global pooling).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

# (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj) of each module, from Table 1.
MODULES: dict[str, tuple[int, int, int, int, int, int]] = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


def _conv(features: int, k: int, name: str, stride: int = 1) -> nn.Conv:
    return nn.Conv(features, (k, k), strides=(stride, stride), padding="SAME", name=name)


class InceptionModule(nn.Module):
    """One inception module: four branches concatenated along channels (1x1, 3x3, 5x5, pool projection)."""

    n1x1: int
    n3x3_reduce: int
    n3x3: int
    n5x5_reduce: int
    n5x5: int
    pool_proj: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b1 = nn.relu(_conv(self.n1x1, 1, "b1_1x1")(x))
        b2 = nn.relu(_conv(self.n3x3_reduce, 1, "b2_reduce")(x))
        b2 = nn.relu(_conv(self.n3x3, 3, "b2_3x3")(b2))
        b3 = nn.relu(_conv(self.n5x5_reduce, 1, "b3_reduce")(x))
        b3 = nn.relu(_conv(self.n5x5, 5, "b3_5x5")(b3))
        b4 = nn.max_pool(x, (3, 3), strides=(1, 1), padding="SAME")
        b4 = nn.relu(_conv(self.pool_proj, 1, "b4_proj")(b4))
        return jnp.concatenate([b1, b2, b3, b4], axis=-1)


class GoogLeNet(nn.Module):
    """GoogLeNet (Inception v1) without auxiliary classifiers.

    Attributes:
      num_classes: number of output scores.
      dropout: drop rate before the classifier (training only).
    """

    num_classes: int
    dropout: float = 0.4

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        def pool(x):
            return nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")

        x = pool(nn.relu(_conv(64, 7, "conv1", stride=2)(x)))
        x = nn.relu(_conv(64, 1, "conv2_reduce")(x))
        x = pool(nn.relu(_conv(192, 3, "conv2")(x)))
        for name, sizes in MODULES.items():
            if name in ("4a", "5a"):
                x = pool(x)
            x = InceptionModule(*sizes, name=f"inception{name}")(x)
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.num_classes, name="head")(x)

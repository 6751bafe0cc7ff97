"""The linear (affine) classifier: scores s = W x + b on the flattened image."""

from __future__ import annotations

import flax.linen as nn
import jax


class Linear(nn.Module):
    """Affine map from the flattened input to ``num_classes`` scores."""

    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train  # no train-time behaviour
        x = x.reshape((x.shape[0], -1))
        return nn.Dense(self.num_classes, name="head")(x)

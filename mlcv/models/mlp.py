"""Multi-layer perceptron with sigmoid or ReLU hidden units."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

_ACTIVATIONS = {"relu": nn.relu, "sigmoid": nn.sigmoid, "tanh": nn.tanh}


class MLP(nn.Module):
    """Fully connected layers ``hidden`` with ``activation``, then a linear head.

    Attributes:
      num_classes: number of output scores.
      hidden: widths of the hidden layers.
      activation: ``relu``, ``sigmoid`` or ``tanh``.
      dropout: drop rate after each hidden layer (training only).
    """

    num_classes: int
    hidden: Sequence[int] = (128,)
    activation: str = "relu"
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; valid: {sorted(_ACTIVATIONS)}")
        act = _ACTIVATIONS[self.activation]
        x = x.reshape((x.shape[0], -1))
        for i, width in enumerate(self.hidden):
            x = act(nn.Dense(width, name=f"hidden{i}")(x))
            x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.num_classes, name="head")(x)

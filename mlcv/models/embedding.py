"""Embedding networks for metric learning: a backbone of the zoo, a projection, L2 normalisation.

Any classifier of the zoo becomes an embedding network by building it with ``num_classes=dim``: its
classification head (the last dense layer) is then the projection to the embedding space, and
everything before it is the backbone. On top of the projection ``z``:

- ``embedding = z / |z|`` (``normalize``), the vector that retrieval, kNN and verification compare;
- a head for the losses that classify identities: ``"linear"`` logits ``W z + b`` (the softmax
  classifier whose penultimate layer is the embedding, as DeepFace trains it) or ``"cosine"`` class
  templates (ArcFace: the loss normalises them and applies the angular margin).

``relu`` puts a ReLU on ``z`` first, for DeepFace, whose representation is a rectified layer (non-negative
components, which its normalisation by the training maxima assumes).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

HEADS = ("none", "linear", "cosine")


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """``x / max(|x|, eps)`` along the last axis; finite gradients at zero."""
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps * eps))


class EmbeddingNet(nn.Module):
    """``backbone`` (a zoo classifier built with ``num_classes`` = the embedding size) and an optional head.

    Attributes:
      backbone: the network; its output ``z`` [B, D] is the projection.
      num_classes: identities of the training split, for ``head`` != "none".
      head: "none", "linear" (logits of a softmax classifier on ``z``) or "cosine" (ArcFace's class
        templates, returned as the parameter ``templates`` [D, C] for the loss to normalise).
      normalize: the returned ``embedding`` is ``z / |z|``; else ``z`` itself.
      relu: a ReLU on ``z`` before anything else.

    Returns a dict: ``embedding`` [B, D], ``features`` (``z``), and ``logits`` [B, C] or ``templates`` [D, C].
    """

    backbone: nn.Module
    num_classes: int = 0
    head: str = "none"
    normalize: bool = True
    relu: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> dict[str, jax.Array]:
        z = self.backbone(x, train=train).astype(jnp.float32)
        if self.relu:
            z = nn.relu(z)
        out = {"features": z, "embedding": l2_normalize(z) if self.normalize else z}
        if self.head == "linear":
            out["logits"] = nn.Dense(self.num_classes, name="classifier")(z)
        elif self.head == "cosine":
            # One template per identity; ArcFace compares directions only, so the scale of the init is moot.
            out["templates"] = self.param(
                "templates", nn.initializers.normal(1.0), (z.shape[-1], self.num_classes), jnp.float32
            )
        return out

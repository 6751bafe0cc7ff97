"""MC-CNN (Zbontar & LeCun 2016): a siamese convolutional network that scores whether two patches match.

Both architectures of the paper share a feature tower: ``num_layers`` 3x3 convolutions with ReLUs between them,
applied with shared weights to a left and a right grey patch. Without padding, a patch of
``2 * num_layers + 1`` pixels on a side shrinks to a single feature vector (the paper's KITTI fast network:
4 layers on 9x9 patches).

- ``MCCNNFast``: the two feature vectors are L2-normalised and the score is their dot product, the cosine
  similarity in [-1, 1] (the paper trains it with a hinge loss on a positive and a negative pair).
- ``MCCNNAccurate``: the tower ends in a ReLU, the two vectors are concatenated and passed through fully connected
  layers to one logit; ``sigmoid(score)`` is the match probability (the paper trains it with binary
  cross-entropy).

Dense evaluation. Run with 'SAME' padding over a whole image, the same convolutions give a feature vector per
pixel (``features``), and at every pixel at least ``num_layers`` pixels from the border it equals the patch
network's output on the patch centred there: the fully-convolutional equivalence the paper relies on to compute
all disparities of an image at once. 'SAME' padding is obtained by zero-padding each layer's input by 1 before the
'VALID' convolution, so both modes use the very same parameters. ``match_scores`` then builds the cost volume
``[B, H, W, D]`` (``D = max_disparity + 1``, higher is a better match): for the fast network the dot product of the
left features with the right ones shifted by ``d`` (a sum over channels, i.e. :func:`mlcv.ops.cost_volume.
correlation_1d` times the channel count, since that op takes the mean; with unit vectors the sum is the cosine);
for the accurate network the fully connected layers run as 1x1 convolutions (``nn.Dense`` acts on the last axis)
on GC-Net-style concatenated features (:func:`mlcv.ops.cost_volume.concat_cost_volume`). Where ``x - d < 0`` the
right partner is missing: the fast score is 0 there, the accurate one is the head applied to a zero vector.

Scaled down from the paper: 32 feature maps instead of 64 (fast) and 112 (accurate); the accurate head has two
hidden layers of 128 units instead of three of 384. No batch normalization (the paper has none).
"""

from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

from mlcv.ops import cost_volume

_EPS = 1e-8


class FeatureTower(nn.Module):
    """``num_layers`` 3x3 convolutions (``conv0``, ...) with ReLUs between them; 'VALID' or per-layer 'SAME'.

    Attributes:
      channels: feature maps of every convolution.
      num_layers: convolutions; a patch of ``2 * num_layers + 1`` pixels shrinks to one feature vector.
      relu_last: a ReLU after the last convolution too (accurate network) or not (fast network).
    """

    channels: int
    num_layers: int
    relu_last: bool

    @nn.compact
    def __call__(self, x: jax.Array, *, dense: bool) -> jax.Array:
        for i in range(self.num_layers):
            if dense:  # zero-padding by 1 then a 'VALID' 3x3 convolution is a 'SAME' convolution
                x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
            x = nn.Conv(self.channels, (3, 3), padding="VALID", name=f"conv{i}")(x)
            if i < self.num_layers - 1 or self.relu_last:
                x = nn.relu(x)
        return x


def _check_patches(left: jax.Array, right: jax.Array, size: int, who: str) -> None:
    if left.shape != right.shape or left.ndim != 4 or left.shape[1:3] != (size, size):
        raise ValueError(
            f"{who}: expected two [B, {size}, {size}, C] patches (2 * num_layers + 1 = {size}), "
            f"got {left.shape} and {right.shape}"
        )


def _l2_normalise(x: jax.Array) -> jax.Array:
    return x / jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True) + _EPS)


def _right_at(right: jax.Array, disparities: jax.Array) -> jax.Array:
    """Right features ``[B, H, W, K, F]`` at ``x - d`` for integer ``disparities`` ``[B, H, W, K]`` (clipped at 0)."""
    b, h, w, k = disparities.shape
    x = jnp.arange(w)[None, None, :, None]
    idx = jnp.clip(x - disparities, 0, w - 1).reshape(b, h, w * k)
    gathered = jnp.take_along_axis(right, jnp.broadcast_to(idx[..., None], (b, h, w * k, right.shape[-1])), axis=2)
    return gathered.reshape(b, h, w, k, right.shape[-1])


class MCCNNFast(nn.Module):
    """MC-CNN fast: cosine similarity of L2-normalised siamese features.

    Attributes:
      channels: feature maps per convolution (64 in the paper).
      num_layers: 3x3 convolutions (4 in the paper for KITTI); patches are ``2 * num_layers + 1`` square.
    """

    channels: int = 32
    num_layers: int = 4

    def setup(self) -> None:
        self.tower = FeatureTower(self.channels, self.num_layers, relu_last=False)

    @property
    def patch_size(self) -> int:
        """The side of the patches ``__call__`` takes."""
        return 2 * self.num_layers + 1

    def __call__(self, left_patches: jax.Array, right_patches: jax.Array, *, train: bool = False) -> dict:
        """Scores ``[B, P, P, C]`` patch pairs (``P = patch_size``): ``{"score": [B]}``, cosines in [-1, 1]."""
        del train  # no dropout or normalization layers
        _check_patches(left_patches, right_patches, self.patch_size, "MCCNNFast")
        left = _l2_normalise(self.tower(left_patches, dense=False)[:, 0, 0])
        right = _l2_normalise(self.tower(right_patches, dense=False)[:, 0, 0])
        return {"score": jnp.sum(left * right, axis=-1)}

    def features(self, image: jax.Array) -> jax.Array:
        """Dense L2-normalised features ``[B, H, W, channels]`` of an image ``[B, H, W, C]`` ('SAME' padding)."""
        return _l2_normalise(self.tower(image, dense=True))

    def match_scores(self, left_image: jax.Array, right_image: jax.Array, max_disparity: int) -> jax.Array:
        """Cosine cost volume ``[B, H, W, max_disparity + 1]``: left features . right features at ``x - d``."""
        left, right = self.features(left_image), self.features(right_image)
        # correlation_1d averages over channels; the paper's score is the sum (the cosine of unit vectors).
        return cost_volume.correlation_1d(left, right, max_disparity) * left.shape[-1]

    def pair_scores(self, left_image: jax.Array, right_image: jax.Array, disparities: jax.Array) -> jax.Array:
        """Scores ``[B, H, W, K]`` of each left pixel with the right one ``disparities[..., k]`` px to its left.

        Training needs a positive and a negative per pixel, not all D disparities: this is the paper's patch-pair
        training run densely. Where ``x - d < 0`` the partner is the right view's first column (callers mask it).
        """
        left, right = self.features(left_image), self.features(right_image)
        return jnp.sum(left[:, :, :, None] * _right_at(right, disparities), axis=-1)


class MCCNNAccurate(nn.Module):
    """MC-CNN accurate: concatenated siamese features through fully connected layers to a match logit.

    Attributes:
      channels: feature maps per convolution (112 in the paper).
      num_layers: 3x3 convolutions (4 in the paper for KITTI); patches are ``2 * num_layers + 1`` square.
      hidden: widths of the hidden fully connected layers (the paper: three of 384).
    """

    channels: int = 32
    num_layers: int = 4
    hidden: tuple[int, ...] = (128, 128)

    def setup(self) -> None:
        self.tower = FeatureTower(self.channels, self.num_layers, relu_last=True)
        self.fc = [nn.Dense(width, name=f"fc{i}") for i, width in enumerate(self.hidden)]
        self.out = nn.Dense(1, name="out")

    @property
    def patch_size(self) -> int:
        """The side of the patches ``__call__`` takes."""
        return 2 * self.num_layers + 1

    def _head(self, pair: jax.Array) -> jax.Array:
        """Logits ``[...]`` of concatenated feature pairs ``[..., 2 * channels]``."""
        for fc in self.fc:
            pair = nn.relu(fc(pair))
        return self.out(pair)[..., 0]

    def __call__(self, left_patches: jax.Array, right_patches: jax.Array, *, train: bool = False) -> dict:
        """Scores ``[B, P, P, C]`` patch pairs (``P = patch_size``): ``{"score": [B]}`` logits."""
        del train
        _check_patches(left_patches, right_patches, self.patch_size, "MCCNNAccurate")
        left = self.tower(left_patches, dense=False)[:, 0, 0]
        right = self.tower(right_patches, dense=False)[:, 0, 0]
        return {"score": self._head(jnp.concatenate([left, right], axis=-1))}

    def features(self, image: jax.Array) -> jax.Array:
        """Dense features ``[B, H, W, channels]`` of an image ``[B, H, W, C]`` ('SAME' padding)."""
        return self.tower(image, dense=True)

    def match_scores(self, left_image: jax.Array, right_image: jax.Array, max_disparity: int) -> jax.Array:
        """Logit cost volume ``[B, H, W, max_disparity + 1]``: the head as 1x1 convolutions on every pair."""
        left, right = self.features(left_image), self.features(right_image)
        w = left.shape[2]

        # One disparity at a time (lax.map): the whole [B, D, H, W, 2F] volume of the 500 x 741 Motorcycle pair with
        # 80 disparities would take 7.6 GB before the head. Flax modules cannot be called inside a JAX transform, so
        # the head runs there as plain matrix products on its parameters (created at init by this first call).
        self._head(jnp.zeros((1, 2 * left.shape[-1]), left.dtype))
        layers = [(m.variables["params"]["kernel"], m.variables["params"]["bias"]) for m in (*self.fc, self.out)]
        # The first layer on [left, right] is left @ K_l + right @ K_r: the left half is the same for every d.
        first, bias0 = layers[0]
        left_part = left @ first[: left.shape[-1]] + bias0
        # Zeros before column 0, so a slice starting d columns earlier is the right view shifted by d, with
        # concat_cost_volume's zero partner where x - d < 0.
        padded = jnp.pad(right, ((0, 0), (0, 0), (max_disparity, 0), (0, 0)))

        def one(d: jax.Array) -> jax.Array:
            shifted = jax.lax.dynamic_slice_in_dim(padded, max_disparity - d, w, axis=2)
            x = left_part + shifted @ first[left.shape[-1] :]
            for i, (kernel, bias) in enumerate(layers):
                x = x if i == 0 else x @ kernel + bias
                x = nn.relu(x) if i < len(layers) - 1 else x
            return x[..., 0]

        return jnp.moveaxis(jax.lax.map(one, jnp.arange(max_disparity + 1)), 0, -1)

    def pair_scores(self, left_image: jax.Array, right_image: jax.Array, disparities: jax.Array) -> jax.Array:
        """Logits ``[B, H, W, K]`` of each left pixel with the right one ``disparities[..., k]`` px to its left.

        The head runs on K pairs per pixel instead of D: for the pairs of a training step this is D / K times
        cheaper than ``match_scores`` (16x for 32 disparities), the paper's patch-pair training run densely.
        """
        left, right = self.features(left_image), self.features(right_image)
        pairs = _right_at(right, disparities)
        left = jnp.broadcast_to(left[:, :, :, None], pairs.shape)
        return self._head(jnp.concatenate([left, pairs], axis=-1))


#: For tests: 8 maps, 2 layers on 5x5 patches.
MCCNNFastTiny = partial(MCCNNFast, channels=8, num_layers=2)
#: For tests: 8 maps, 2 layers on 5x5 patches, one hidden layer of 16.
MCCNNAccurateTiny = partial(MCCNNAccurate, channels=8, num_layers=2, hidden=(16,))

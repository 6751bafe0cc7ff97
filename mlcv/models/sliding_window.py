"""The course's slow sliding-window segmentation baseline (§11.2), and the same classifier run convolutionally.

Before fully convolutional networks, a per-pixel label came from a patch classifier run on the window around
every pixel. :class:`PatchClassifier` is such a classifier: stride-1 'VALID' 3x3 convolutions (each followed by
a ReLU), then a hidden Dense layer on the flattened map and a Dense layer to the class scores.
:func:`sliding_window_logits` is the baseline itself: one window cut per pixel, the classifier run on every
window, a chunk of windows at a time. :func:`fully_convolutional_logits` runs the same parameters once over
the padded image: the convolutions as they are, the hidden Dense as a ``k x k`` 'VALID' convolution whose
kernel is the Dense kernel reshaped, the last Dense as a 1x1 convolution. Both give the same logits at every
pixel (to float rounding); the second computes the convolutional features shared by overlapping windows once
instead of once per window (``benchmarks/sliding_window.py`` measures the difference).

No pooling and no stride: a 2x2 max pool (or any stride) inside the classifier would make the convolutional
version produce one output every 2 pixels, and its per-pixel equivalent would need the shift-and-stitch
trick; stride-1 'VALID' convolutions keep the equivalence exact at every pixel.

Borders: the image is padded with zeros by ``patch // 2`` on each side, so the window of a border pixel sees
zeros outside the image, as a 'SAME' zero-padded convolution would; both functions pad the same way. Zeros
are the mean of mlcv's normalized inputs, and padding once before the convolutional version keeps it exactly
equal to the windowed one (reflect padding would do too, for both; zeros is the course's default).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

_DIMS = ("NHWC", "HWIO", "NHWC")


def check_patch(patch: int, num_convs: int = 0) -> None:
    """Raises ValueError unless ``patch`` is odd (a window has a centre pixel) and survives the 3x3 convs."""
    if patch < 1 or patch % 2 == 0:
        raise ValueError(f"patch must be a positive odd number (a window centred on its pixel), got {patch}")
    if patch - 2 * num_convs < 1:
        raise ValueError(
            f"patch {patch} is too small for {num_convs} 'VALID' 3x3 convolutions (needs >= {2 * num_convs + 1})"
        )


class PatchClassifier(nn.Module):
    """Classifies the centre pixel of a ``patch x patch`` window: ``[N, patch, patch, C]`` -> ``[N, num_classes]``.

    Layers: one stride-1 'VALID' 3x3 convolution + ReLU per entry of ``features`` (each takes 2 pixels off
    the map's height and width, leaving ``k = patch - 2 * len(features)``), then ``fc`` (a Dense layer of
    ``hidden`` units on the flattened ``k x k`` map) + ReLU, then ``classifier`` (a Dense layer to the class
    scores). Parameters: ``convs_0``, ``convs_1``, ..., ``fc``, ``classifier``.

    Attributes:
      num_classes: classes of the centre pixel.
      patch: the window's side, odd.
      features: output channels of the 3x3 convolutions, a tuple.
      hidden: units of the hidden Dense layer.
    """

    num_classes: int
    patch: int = 17
    features: Sequence[int] = (16, 32, 32)
    hidden: int = 64

    def setup(self) -> None:
        check_patch(self.patch, len(self.features))
        self.convs = [nn.Conv(f, (3, 3), padding="VALID") for f in self.features]
        self.fc = nn.Dense(self.hidden)
        self.classifier = nn.Dense(self.num_classes)

    def trunk(self, x: jax.Array) -> jax.Array:
        """The convolutions with their ReLUs, on windows or on a whole padded image: ``[B, h - 2L, w - 2L, F]``."""
        for conv in self.convs:
            x = nn.relu(conv(x))
        return x

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """The centre pixel's logits ``[N, num_classes]`` of windows ``x`` ``[N, patch, patch, C]``."""
        del train  # no dropout or normalization; the flag keeps mlcv's model signature
        chex.assert_rank(x, 4)
        if x.shape[1:3] != (self.patch, self.patch):
            raise ValueError(f"PatchClassifier(patch={self.patch}) got windows of {x.shape[1]}x{x.shape[2]}")
        y = self.trunk(x)
        y = nn.relu(self.fc(y.reshape(y.shape[0], -1)))
        return self.classifier(y)

    def fully_convolutional(self, padded: jax.Array) -> jax.Array:
        """The same classifier as a convolutional net on an image padded by ``patch // 2``: ``[B, H, W, classes]``.

        ``fc``'s kernel ``[k * k * F, hidden]`` reshapes to a ``[k, k, F, hidden]`` (HWIO) kernel because the
        flattening in ``__call__`` runs over (row, column, channel) in that order; ``classifier``'s
        ``[hidden, classes]`` kernel is a ``[1, 1, hidden, classes]`` one.
        """
        chex.assert_rank(padded, 4)
        y = self.trunk(padded)
        k = self.patch - 2 * len(self.features)
        # The Dense layers' parameters, read as they are: the kernels are never called as Dense layers here.
        fc, classifier = self.variables["params"]["fc"], self.variables["params"]["classifier"]
        fc_kernel = fc["kernel"].reshape(k, k, y.shape[-1], self.hidden)
        y = jax.lax.conv_general_dilated(y, fc_kernel, (1, 1), "VALID", dimension_numbers=_DIMS)
        y = nn.relu(y + fc["bias"])
        cls_kernel = classifier["kernel"].reshape(1, 1, self.hidden, self.num_classes)
        y = jax.lax.conv_general_dilated(y, cls_kernel, (1, 1), "VALID", dimension_numbers=_DIMS)
        return y + classifier["bias"]


def pad_image(image: jax.Array, patch: int) -> jax.Array:
    """``image`` ``[B, H, W, C]`` padded with zeros by ``patch // 2`` on each side of H and W."""
    r = patch // 2
    return jnp.pad(image, ((0, 0), (r, r), (r, r), (0, 0)))


def _check(model: PatchClassifier, image: jax.Array, patch: int) -> None:
    check_patch(patch)
    if patch != model.patch:
        raise ValueError(f"patch={patch} but the model classifies {model.patch}x{model.patch} windows")
    chex.assert_rank(image, 4)


@partial(jax.jit, static_argnames=("model", "patch", "chunk", "height", "width"))
def _chunk_logits(
    model: PatchClassifier,
    variables: Mapping[str, Any],
    padded: jax.Array,
    start: jax.Array,
    *,
    patch: int,
    chunk: int,
    height: int,
    width: int,
) -> jax.Array:
    """Logits ``[chunk, classes]`` of the pixels ``start .. start + chunk - 1`` in (image, row, column) order."""
    total = padded.shape[0] * height * width
    # The last chunk repeats the last pixel rather than compiling a second, shorter shape.
    index = jnp.minimum(start + jnp.arange(chunk), total - 1)
    b, rest = jnp.divmod(index, height * width)
    row, col = jnp.divmod(rest, width)
    offsets = jnp.arange(patch)
    # Pixel (row, col) of the image is pixel (row + r, col + r) of the padded one: its window starts at (row, col).
    rows = (row[:, None] + offsets)[:, :, None]
    cols = (col[:, None] + offsets)[:, None, :]
    windows = padded[b[:, None, None], rows, cols]  # [chunk, patch, patch, C]
    return model.apply(variables, windows)


def sliding_window_logits(
    model: PatchClassifier, variables: Mapping[str, Any], image: jax.Array, patch: int, chunk: int = 4096
) -> jax.Array:
    """The course's baseline: the patch classifier run on the window around every pixel, ``[B, H, W, classes]``.

    The image is padded with zeros by ``patch // 2`` on each side (see the module docstring); the ``B * H * W``
    windows are cut and classified ``chunk`` at a time in a Python loop, so memory stays bounded by one chunk's
    windows and activations whatever the image size. Every window's convolutions are computed afresh.
    """
    _check(model, image, patch)
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    batch, height, width = image.shape[:3]
    padded = pad_image(jnp.asarray(image), patch)
    total = batch * height * width
    step = partial(_chunk_logits, model, variables, padded, patch=patch, chunk=chunk, height=height, width=width)
    logits = jnp.concatenate([step(jnp.int32(start)) for start in range(0, total, chunk)])
    return logits[:total].reshape(batch, height, width, -1)


@partial(jax.jit, static_argnames=("model",))
def _fully_convolutional(model: PatchClassifier, variables: Mapping[str, Any], padded: jax.Array) -> jax.Array:
    return model.apply(variables, padded, method=PatchClassifier.fully_convolutional)


def fully_convolutional_logits(
    model: PatchClassifier, variables: Mapping[str, Any], image: jax.Array, patch: int
) -> jax.Array:
    """The same logits as :func:`sliding_window_logits`, from one convolutional pass over the padded image."""
    _check(model, image, patch)
    return _fully_convolutional(model, variables, pad_image(jnp.asarray(image), patch))

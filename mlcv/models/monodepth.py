"""Monodepth (Godard, Mac Aodha & Brostow 2017): disparities of both views of a stereo pair from the left image.

A single-image encoder-decoder sees only the left image. Trained with the paper's self-supervision, the left
disparity warps the right image onto the left and the right disparity the left onto the right (image
reconstruction, smoothness and left-right consistency losses; the task's business, not this module's).

- Encoder: ``depth`` levels, each a stride-2 convolution and a convolution (``conv{i}a``, ``conv{i}b``): 7x7 at
  level 1, 5x5 at level 2, 3x3 beyond, as in the paper's VGG-style encoder; channels ``features * 2**i`` capped at
  ``8 * features``.
- Decoder: at each level a 3x3 convolution after 2x nearest upsampling (``upconv{i}``, the paper's up-
  convolution), concatenated with the encoder's features of that level and, at the ``num_scales - 1`` finest
  levels below the coarsest output, with the 2x upsampled coarser prediction; then a 3x3 convolution
  (``iconv{i}``).
- At the ``num_scales`` finest levels (full resolution, 1/2, 1/4, 1/8 for the paper's 4) a 3x3 convolution to two
  channels (``disp{s}``), the left and the right disparity, through a sigmoid times ``max_disparity_fraction``:
  a fraction of the image width in ``(0, 0.3)`` for the paper's 0.3.

Outputs are in pixels: the fraction times the width of the prediction's own scale. Both disparities are
positive: a left pixel ``x`` matches the right pixel ``x - d_left``, a right pixel ``x`` the left ``x + d_right``.
ELU activations as in the paper; no batch normalization (the paper has none).

Scaled down from the paper (32 channels at level 1 doubling to 512, 7 levels): ``features=16`` capped at 128,
``depth=5`` (2x4 at the bottom for 64x128 inputs). H and W must be divisible by ``2 ** depth``.
"""

from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp


def _upsample2(x: jax.Array) -> jax.Array:
    """Nearest-neighbour 2x upsampling of ``[B, h, w, C]``."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class Monodepth(nn.Module):
    """Monodepth: left and right disparities at ``num_scales`` scales from the left image.

    Attributes:
      features: channels of encoder level 1 (32 in the paper); level ``i`` has ``features * 2**(i-1)``, capped at
        ``8 * features``.
      depth: stride-2 encoder levels (7 in the paper); at least ``num_scales``.
      num_scales: output scales, full resolution and ``num_scales - 1`` halvings (4 in the paper).
      max_disparity_fraction: the largest disparity as a fraction of the width (0.3 in the paper).
    """

    features: int = 16
    depth: int = 5
    num_scales: int = 4
    max_disparity_fraction: float = 0.3

    @nn.compact
    def __call__(self, image: jax.Array, *, train: bool = False) -> dict:
        """``image``: the left image ``[B, H, W, C]``.

        Returns ``{"disp_left": (...), "disp_right": (...), "disparity": [B, H, W]}``: ``disp_left`` and
        ``disp_right`` are tuples of ``num_scales`` maps ``[B, h, w]`` COARSE-TO-FINE (``1 / 2**(num_scales - 1)``
        first, full resolution last), each in pixels of its own scale; ``disparity`` is ``disp_left[-1]``, the
        full-resolution left disparity in input pixels, in ``(0, max_disparity_fraction * W)``.
        """
        del train
        if image.ndim != 4:
            raise ValueError(f"Monodepth: expected [B, H, W, C] images, got shape {image.shape}")
        factor = 2**self.depth
        if image.shape[1] % factor or image.shape[2] % factor:
            raise ValueError(f"Monodepth: H and W ({image.shape[1:3]}) must be divisible by 2 ** depth = {factor}")
        if not 1 <= self.num_scales <= self.depth:
            raise ValueError(f"Monodepth: need 1 <= num_scales <= depth, got {self.num_scales}, {self.depth}")

        def width(level: int) -> int:
            return min(self.features * 2 ** max(level - 1, 0), 8 * self.features)

        x = image
        skips = {}
        for level in range(1, self.depth + 1):
            k = 7 if level == 1 else 5 if level == 2 else 3
            x = nn.elu(nn.Conv(width(level), (k, k), strides=(2, 2), name=f"conv{level}a")(x))
            x = nn.elu(nn.Conv(width(level), (k, k), name=f"conv{level}b")(x))
            skips[level] = x
        lefts, rights = [], []
        fraction = None  # the last prediction, as a width fraction [B, h, w, 2]
        for level in reversed(range(self.depth)):  # decoder level ``level`` is at 1 / 2**level
            channels = width(level) if level else max(self.features // 2, 1)
            x = nn.elu(nn.Conv(channels, (3, 3), name=f"upconv{level}")(_upsample2(x)))
            parts = [x, skips[level]] if level else [x]
            if fraction is not None:
                parts.append(_upsample2(fraction))
            x = nn.elu(nn.Conv(x.shape[-1], (3, 3), name=f"iconv{level}")(jnp.concatenate(parts, axis=-1)))
            if level < self.num_scales:
                logits = nn.Conv(2, (3, 3), name=f"disp{level}")(x)
                fraction = self.max_disparity_fraction * nn.sigmoid(logits)
                pixels = fraction * x.shape[2]
                lefts.append(pixels[..., 0])
                rights.append(pixels[..., 1])
        return {"disp_left": tuple(lefts), "disp_right": tuple(rights), "disparity": lefts[-1]}


#: For tests: 4 channels, 4 levels (outputs at 1/8 .. 1).
MonodepthTiny = partial(Monodepth, features=4, depth=4)

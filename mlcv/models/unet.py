"""U-Net (Ronneberger, Fischer & Brox 2015): a symmetric encoder-decoder with skip connections.

The contracting path sees context (each 2x2 max pool doubles the reach of the 3x3 convolutions after it), the
expanding path gives the resolution back, and the skips hand each decoder level the encoder's features of the
same size, so that boundaries are placed from full-resolution evidence rather than guessed from the coarse grid.

Level ``i`` (0 at full resolution) has ``features * 2**i`` channels at ``H / 2**i``:

- encoder level ``i < depth``: two 3x3 convolutions (``enc{i}``), kept as the skip, then a 2x2 max pool;
- bottom (level ``depth``): two 3x3 convolutions (``bottom``);
- decoder level ``i``: a 2x2 stride-2 transposed convolution (``up{i}``) that doubles the resolution and halves the
  channels, the concatenation ``[skip_i, up_i]`` (``2 * features * 2**i`` channels), two 3x3 convolutions
  (``dec{i}``);
- a 1x1 classifier: logits ``[B, H, W, num_classes]``.

Departures from the paper, and why:

- 'SAME' padding: the paper's unpadded convolutions shrink every map (a 572x572 tile gives 388x388 logits), so its
  skips are centre-cropped to the decoder's size and large images are segmented tile by tile with mirrored
  borders (overlap-tile). Padding keeps every map a power-of-two fraction of the input, so the skips line up
  without cropping and the logits come out at the input's size, as the segmentation task expects; the price is
  that border pixels see zeros where the paper saw mirrored context. H and W must be divisible by ``2**depth``.
- batch normalization after each 3x3 convolution (``batch_norm=True``, the default; the paper has none): it lets
  a small network train with a plain learning rate from scratch on a CPU. ``batch_norm=False`` gives the paper's
  conv + bias + ReLU.
- no dropout at the end of the contracting path (the paper's only explicit regularizer besides augmentation).
"""

from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

# He-normal, the paper's initialisation: std sqrt(2 / N), N the incoming connections of one unit (fan-in).
_HE_INIT = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


class DoubleConv(nn.Module):
    """Two 3x3 'SAME' convolutions, each followed by batch normalization (optional) and ReLU.

    Attributes:
      features: output channels of both convolutions.
      batch_norm: BN after each convolution (momentum 0.9); the convolutions then have no bias, which BN's own
        shift would make redundant.
    """

    features: int
    batch_norm: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        for i in range(2):
            x = nn.Conv(self.features, (3, 3), use_bias=not self.batch_norm, kernel_init=_HE_INIT, name=f"conv{i}")(x)
            if self.batch_norm:
                x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name=f"bn{i}")(x)
            x = nn.relu(x)
        return x


class UNet(nn.Module):
    """U-Net with 'SAME' padding: per-pixel logits ``[B, H, W, num_classes]`` at the input's size.

    Attributes:
      num_classes: classes per pixel.
      features: channels of the full-resolution level (64 in the paper); level ``i`` has ``features * 2**i``.
      depth: number of 2x2 poolings (4 in the paper); H and W must be divisible by ``2**depth``.
      batch_norm: batch normalization after every 3x3 convolution (the paper has none; see the module docstring).
    """

    num_classes: int
    features: int = 64
    depth: int = 4
    batch_norm: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(f"UNet: expected [B, H, W, C] images, got shape {x.shape}")
        height, width = x.shape[1:3]
        factor = 2**self.depth
        if height % factor or width % factor:
            raise ValueError(
                f"UNet: input {height}x{width} (shape {x.shape}) is not divisible by 2**depth = {factor} "
                f"(depth={self.depth}); pad or crop the images to a multiple of {factor}"
            )
        block = partial(DoubleConv, batch_norm=self.batch_norm)
        skips = []
        for i in range(self.depth):
            x = block(self.features * 2**i, name=f"enc{i}")(x, train=train)
            skips.append(x)
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = block(self.features * 2**self.depth, name="bottom")(x, train=train)
        for i in reversed(range(self.depth)):
            # Kernel = stride = 2: every coarse pixel writes its own 2x2 block, no overlaps (no checkerboard).
            x = nn.ConvTranspose(self.features * 2**i, (2, 2), strides=(2, 2), padding="VALID", name=f"up{i}")(x)
            x = jnp.concatenate([skips[i], x.astype(skips[i].dtype)], axis=-1)
            x = block(self.features * 2**i, name=f"dec{i}")(x, train=train)
        return nn.Conv(self.num_classes, (1, 1), name="classifier")(x)


#: For a 2-core CPU: 16 channels at full resolution, 256 at the bottom of four poolings.
UNetSmall = partial(UNet, features=16, depth=4)
#: A few thousand parameters, for tests: 4 channels, two poolings.
UNetTiny = partial(UNet, features=4, depth=2)

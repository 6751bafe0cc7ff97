"""A small fully convolutional net for per-pixel classification of low-resolution images.

Context at a coarse grid, detail at full resolution: a ``patch x patch`` convolution of stride ``patch``
(space-to-depth: every input pixel reaches the coarse grid, none is pooled away) feeds 3x3 convolutions
with dilations growing on the coarse grid (Yu & Koltun 2016's context module), so that the receptive
field covers a whole 64x64 body picture at a sixteenth of the full-resolution cost; a transposed
convolution of the same stride then gives every pixel its own features back, which a full-resolution
3x3 convolution merges with the input before a 1x1 classifier. Logits come out at the input's size.

Why not the dilated stack at full resolution: on the shared 2-core CPU one Adam step on a batch of 16
64x64 images took 1.57 s with six 32-channel full-resolution convolutions (dilations up to 16), against
0.10 s for a 64-channel context on the 4x4 grid (dilations 1, 2, 4; no refinement): the same script,
while the machine also ran other jobs.

Also here: :class:`FCN`, the FCN-32s / 16s / 8s of Long et al. (2015), on a VGG backbone with skip
connections from pool4 and pool3 and bilinear-initialised transposed convolutions.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

from mlcv.models.upsample import bilinear_conv_transpose, upsample_bilinear
from mlcv.models.vgg import CONFIGS, conv_stages


class SmallFCN(nn.Module):
    """Patchify, dilated 3x3 context on the coarse grid, un-patchify, full-resolution 3x3 refinement, 1x1 classifier.

    Every convolution but the classifier is followed by batch normalization and ReLU. Inputs must have
    a height and width divisible by ``patch``; the output is ``[B, H, W, num_classes]`` logits.

    Attributes:
      num_classes: classes per pixel.
      features: channels of the coarse grid.
      patch: the coarse grid's stride (space-to-depth factor); 1 runs the context at full resolution.
      dilations: one 3x3 convolution on the coarse grid per entry, with that dilation.
      refine_features: channels per pixel at full resolution; 0 skips the refinement, the classifier
        then reads the coarse features through a transposed convolution straight to the logits.
    """

    num_classes: int
    features: int = 64
    patch: int = 4
    dilations: Sequence[int] = (1, 2, 4, 1)
    refine_features: int = 16

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        height, width = x.shape[1:3]
        if height % self.patch or width % self.patch:
            raise ValueError(f"SmallFCN: input {height}x{width} is not divisible by patch={self.patch}")
        norm = partial(nn.BatchNorm, use_running_average=not train, momentum=0.9)
        full = x
        p = (self.patch, self.patch)
        y = nn.Conv(self.features, p, strides=p, padding="VALID", use_bias=False, name="patchify")(x)
        y = nn.relu(norm(name="patchify_bn")(y))
        for i, d in enumerate(self.dilations):
            y = nn.Conv(self.features, (3, 3), kernel_dilation=d, use_bias=False, name=f"context{i}")(y)
            y = nn.relu(norm(name=f"context{i}_bn")(y))
        if not self.refine_features:
            return nn.ConvTranspose(self.num_classes, p, strides=p, padding="VALID", name="unpatchify")(y)
        y = nn.ConvTranspose(self.refine_features, p, strides=p, padding="VALID", use_bias=False, name="unpatchify")(y)
        y = nn.relu(norm(name="unpatchify_bn")(y))
        # The input itself joins at full resolution: depth edges place the part boundaries to the pixel.
        y = jnp.concatenate([y, full.astype(y.dtype)], axis=-1)
        y = nn.Conv(self.refine_features, (3, 3), use_bias=False, name="refine")(y)
        y = nn.relu(norm(name="refine_bn")(y))
        return nn.Conv(self.num_classes, (1, 1), name="classifier")(y)


#: A few thousand parameters, for tests.
SmallFCNTiny = partial(SmallFCN, features=8, patch=4, dilations=(1, 2), refine_features=4)


_SKIPS = {"32s": 0, "16s": 1, "8s": 2}


class FCN(nn.Module):
    """FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer & Darrell 2015) on a VGG-style backbone.

    The backbone is a VGG layer list (``mlcv.models.vgg.CONFIGS``; five "M" poolings, so pool3, pool4 and
    pool5 have strides 8, 16 and 32). fc6 and fc7 become convolutions (``fc_kernel`` x ``fc_kernel``, then
    1x1; ReLU and dropout after each) and a 1x1 ``score_fr`` gives class scores at stride 32. Then:

    - FCN-32s upsamples those scores x32 to the input size;
    - FCN-16s upsamples them x2 (``upscore2``), adds 1x1 scores of pool4 (``score_pool4``) and upsamples
      the sum x16;
    - FCN-8s does the same, then x2 again (``upscore_pool4``), adds scores of pool3 (``score_pool3``) and
      upsamples x8.

    As in the paper, the skip score layers start at zero (so a net grown from the coarser variant starts
    out with the coarser variant's scores, only upsampled in 2x steps) and the 2x upsamplings are transposed
    convolutions initialised as bilinear interpolation and then learned (no bias). The final upsampling
    is fixed bilinear interpolation, as in the reference Caffe nets, where its learning rate is 0; here it
    is not a parameter at all (``jax.image.resize``, which repeats the edge pixel at the borders), so weight
    decay cannot move it. ``learn_final_upsampling=True`` makes it a bilinear-initialised transposed
    convolution like the 2x ones.

    Departure from the paper: the paper pads conv1_1 by 100 pixels, runs fc6 as a valid 7x7 convolution
    and crops the upsampled scores back into register with the input, which works for any input size.
    Here every layer keeps its grid aligned instead (3x3 convolutions padded by 1, fc6 padded by
    ``fc_kernel // 2``, 2x upsampling that gives exactly twice the size) so pool5 is exactly ``H / 32``
    by ``W / 32`` and no crop is needed; the price is that ``H`` and ``W`` must be divisible by 32.

    Attributes:
      num_classes: classes per pixel.
      variant: "32s", "16s" or "8s".
      config: the backbone's layer list: channel counts and "M" for 2x2 max-pooling, exactly five "M".
      batch_norm: batch normalization after each backbone convolution (which then has no bias), not after
        fc6 and fc7, as in ``VGG``.
      fc_features: channels of fc6 and fc7 (4096 in the paper).
      fc_kernel: fc6's kernel size, odd (7 in the paper, VGG's 7x7 pool5 map).
      dropout: drop rate after fc6 and fc7 (training only).
      learn_final_upsampling: learn the last upsampling (bilinear start) instead of fixing it.

    Returns ``[B, H, W, num_classes]`` logits at the input's size.
    """

    num_classes: int
    variant: str = "8s"
    config: Sequence[int | str] = CONFIGS["D"]
    batch_norm: bool = False
    fc_features: int = 4096
    fc_kernel: int = 7
    dropout: float = 0.5
    learn_final_upsampling: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        if self.variant not in _SKIPS:
            raise ValueError(f"FCN: unknown variant {self.variant!r}; valid: {', '.join(_SKIPS)}")
        if sum(layer == "M" for layer in self.config) != 5:
            raise ValueError(f"FCN: the backbone config needs exactly five 'M' poolings, got {tuple(self.config)}")
        if self.fc_kernel % 2 == 0:
            raise ValueError(f"FCN: fc_kernel must be odd to keep the pool5 grid, got {self.fc_kernel}")
        height, width = x.shape[1:3]
        if height % 32 or width % 32:
            raise ValueError(
                f"FCN: input shape {tuple(x.shape)} has height {height} and width {width}; both must be divisible "
                "by 32 (the stride of pool5)"
            )
        # Named as in VGG, so that a VGG's convolution parameters load as they are.
        _, pools = conv_stages(x, self.config, batch_norm=self.batch_norm, train=train)
        pad = self.fc_kernel // 2
        k = (self.fc_kernel, self.fc_kernel)
        y = nn.relu(nn.Conv(self.fc_features, k, padding=((pad, pad), (pad, pad)), name="fc6")(pools[4]))
        y = nn.Dropout(self.dropout, deterministic=not train)(y)
        y = nn.relu(nn.Conv(self.fc_features, (1, 1), name="fc7")(y))
        y = nn.Dropout(self.dropout, deterministic=not train)(y)
        score = nn.Conv(self.num_classes, (1, 1), name="score_fr")(y)
        stride = 32
        for pool, up_name, skip_name in (
            (pools[3], "upscore2", "score_pool4"),
            (pools[2], "upscore_pool4", "score_pool3"),
        )[: _SKIPS[self.variant]]:
            score = bilinear_conv_transpose(self.num_classes, 2, name=up_name)(score)
            score = score + nn.Conv(self.num_classes, (1, 1), kernel_init=nn.initializers.zeros, name=skip_name)(pool)
            stride //= 2
        if self.learn_final_upsampling:
            return bilinear_conv_transpose(self.num_classes, stride, name=f"upscore{stride}")(score)
        return upsample_bilinear(score, stride)


FCN32s = partial(FCN, variant="32s")
FCN16s = partial(FCN, variant="16s")
FCN8s = partial(FCN, variant="8s")
#: A few thousand parameters, for tests: trains on a CPU at 32x32 to 64x64.
FCNTiny = partial(FCN, config=(4, "M", 8, "M", 8, "M", 16, "M", 16, "M"), fc_features=16, fc_kernel=3, dropout=0.0)

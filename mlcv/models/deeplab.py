"""DeepLab v3 (Chen, Papandreou, Schroff & Adam 2017): a dilated ResNet and atrous spatial pyramid pooling.

A classification ResNet reaches stride 32, too coarse for per-pixel labels. Removing the last strides and dilating
the later 3x3 convolutions instead (atrous convolution; ``ResNet(output_stride=...)`` of
:mod:`mlcv.models.resnet`) keeps the feature map at 1/8 or 1/16 of the input while every later convolution spans
at least the input pixels it spanned with the strides (more here, as ``ResNet`` dilates a stage's first block too:
the tiny test backbone's receptive field is 243 pixels at stride 8, 195 undilated): the weights keep their meaning
and the map stays dense.

On that map, ASPP (:class:`ASPP`) looks at several scales at once: a 1x1 convolution, three 3x3 convolutions with
dilation rates 6, 12, 18 (at output stride 16; doubled at 8, so that they span the same share of the image), and
image-level pooling (global average, 1x1 convolution, broadcast back), each with BN and ReLU, concatenated and
projected by a 1x1 convolution with BN and ReLU; a 1x1 classifier gives the logits, which are upsampled bilinearly
to the input's size.

Why image-level pooling: a 3x3 kernel dilated by ``r`` on an ``n x n`` map has only its centre tap inside the map
once ``r >= n``, so the largest rates degenerate to 1x1 convolutions (the paper's Fig. 4); the pooled branch is
what gives every pixel the whole image's context.

Departures from the paper: no multi-grid rates inside the last stage (its blocks share one dilation, as
``ResNet`` builds them), no decoder (that is v3+), no dropout. Rates are attributes: the paper's 6/12/18 suit
513x513 crops (a 33x33 map at stride 16); small images want small rates (``DeepLabSmall``).
Batch normalization of the pooled branch normalizes one value per image and channel: a training batch of one
image makes that branch constant (its gradient vanishes); train with two or more images a batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

from mlcv.models.resnet import BasicBlock, BottleneckBlock, ResNet

# He-normal with the fan-out, as resnet.py (and torchvision) initialise convolutions.
_CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: parallel 1x1, dilated 3x3 and image-pooling branches, concatenated and
    projected by a 1x1 convolution; every convolution is followed by BN and ReLU.

    Parameters: ``conv1x1``, ``atrous{i}`` (one per rate), ``pool_conv`` (image pooling) and ``project``, each
    with its ``*_bn``.

    Attributes:
      features: channels of every branch and of the output (256 in the paper).
      rates: dilation of each 3x3 branch on the input map (the rates as applied, already scaled to the stride).
      image_pooling: include the image-level branch (global average pooling, 1x1 convolution, broadcast).
    """

    features: int = 256
    rates: Sequence[float] = (6, 12, 18)
    image_pooling: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        def conv_bn_relu(y: jax.Array, kernel: int, dilation: int, name: str) -> jax.Array:
            # 'SAME' pads d * (k // 2) a side, so a dilated 3x3 keeps the map's size.
            y = nn.Conv(
                self.features,
                (kernel, kernel),
                kernel_dilation=dilation,
                use_bias=False,
                kernel_init=_CONV_INIT,
                name=name,
            )(y)
            y = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(y)
            return nn.relu(y)

        branches = [conv_bn_relu(x, 1, 1, "conv1x1")]
        branches += [conv_bn_relu(x, 3, r, f"atrous{i}") for i, r in enumerate(self.rates)]
        if self.image_pooling:
            pooled = conv_bn_relu(jnp.mean(x, axis=(1, 2), keepdims=True), 1, 1, "pool_conv")
            # Bilinear upsampling of a 1x1 map is a broadcast.
            branches.append(jnp.broadcast_to(pooled, (*x.shape[:3], self.features)))
        return conv_bn_relu(jnp.concatenate(branches, axis=-1), 1, 1, "project")


class DeepLab(nn.Module):
    """DeepLab v3: a ResNet at output stride 8 or 16 (dilated later stages), ASPP, a 1x1 classifier, and
    bilinear upsampling of the logits to the input's size: ``[B, H, W, num_classes]``.

    Parameters: ``backbone`` (a :class:`~mlcv.models.resnet.ResNet` without its classifier), ``aspp`` and
    ``classifier``.

    Attributes:
      num_classes: classes per pixel.
      stage_sizes: blocks per ResNet stage ((3, 4, 6, 3): ResNet-50).
      block: the ResNet block class (``BottleneckBlock``, ``BasicBlock``, or a ``partial`` of one).
      widths: base width of each stage.
      stem: the ResNet stem, "imagenet" (stride 4) or "cifar" (stride 1).
      output_stride: the backbone's stride, 8 or 16 in the paper (any power of two that the stem and stages can
        reach and that keeps the scaled rates whole); the input's size need not be a multiple of it.
      rates: ASPP dilation rates at output stride 16; at stride ``s`` each is multiplied by ``16 / s`` (so that
        fractions, e.g. 0.5 at stride 4, give whole dilations).
      aspp_features: channels of every ASPP branch and of its projection.
      image_pooling: include ASPP's image-level branch.
    """

    num_classes: int
    stage_sizes: Sequence[int] = (3, 4, 6, 3)
    block: Callable[..., nn.Module] = BottleneckBlock
    widths: Sequence[int] = (64, 128, 256, 512)
    stem: str = "imagenet"
    output_stride: int = 16
    rates: Sequence[float] = (6, 12, 18)
    aspp_features: int = 256
    image_pooling: bool = True

    def scaled_rates(self) -> tuple[int, ...]:
        """The dilations ASPP applies on the backbone's map: ``rates * 16 / output_stride``."""
        stride = self.output_stride
        if stride < 1 or stride & (stride - 1):
            raise ValueError(f"DeepLab: output_stride must be a power of two, got {stride}")
        scaled = tuple(r * 16 / stride for r in self.rates)
        if any(s != int(s) or s < 1 for s in scaled):
            raise ValueError(
                f"DeepLab: rates {tuple(self.rates)} (given at output stride 16) do not scale to whole dilations "
                f"at output_stride={self.output_stride}: {scaled}"
            )
        return tuple(int(s) for s in scaled)

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(f"DeepLab: expected [B, H, W, C] images, got shape {x.shape}")
        rates = self.scaled_rates()
        backbone = ResNet(
            num_classes=0,  # unused: features_only returns before the classifier is built
            stage_sizes=self.stage_sizes,
            block=self.block,
            widths=self.widths,
            stem=self.stem,
            output_stride=self.output_stride,
            features_only=True,
            name="backbone",
        )
        features = backbone(x, train=train)
        # Every strided layer pads so that it gives ceil(size / stride); a backbone with too few stages to reach
        # the output stride would otherwise be scaled silently with the wrong rates.
        expected = tuple(-(-s // self.output_stride) for s in x.shape[1:3])
        if features.shape[1:3] != expected:
            raise ValueError(
                f"DeepLab: the backbone maps input {x.shape[1:3]} to {features.shape[1:3]}, not {expected} "
                f"(output_stride={self.output_stride}); its stem and {len(self.stage_sizes)} stages do not reach it"
            )
        y = ASPP(self.aspp_features, rates, self.image_pooling, name="aspp")(features, train=train)
        logits = nn.Conv(self.num_classes, (1, 1), name="classifier")(y)
        return jax.image.resize(logits, (x.shape[0], *x.shape[1:3], self.num_classes), "bilinear")


# The paper's networks (ResNet-101 in most of its tables, ResNet-50 in the ablations).
DeepLabV3ResNet50 = partial(DeepLab, stage_sizes=(3, 4, 6, 3), block=BottleneckBlock)
DeepLabV3ResNet101 = partial(DeepLab, stage_sizes=(3, 4, 23, 3), block=BottleneckBlock)

#: For a 2-core CPU and 64x64 images: one basic block a stage, 16-128 channels, output stride 8 (an 8x8 map), rates
#: 1/2/3 at stride 16, i.e. dilations 2/4/6 on the 8x8 map (the paper's 6/12/18 would leave only centre taps).
DeepLabSmall = partial(
    DeepLab,
    stage_sizes=(1, 1, 1, 1),
    block=BasicBlock,
    widths=(16, 32, 64, 128),
    output_stride=8,
    rates=(1, 2, 3),
    aspp_features=64,
)
#: For tests: one basic block a stage, 8 channels throughout, the paper's rates.
DeepLabTiny = partial(DeepLab, stage_sizes=(1, 1, 1, 1), block=BasicBlock, widths=(8, 8, 8, 8), aspp_features=8)

"""Residual networks: ResNet (He et al. 2016), CIFAR ResNets, ResNeXt, SE-ResNet and dilated ResNet.

One ``ResNet`` module builds them all; the variants differ in data only: the stage sizes, the block (``BasicBlock``,
``BottleneckBlock``, a grouped bottleneck for ResNeXt, a bottleneck with squeeze-and-excitation for SE-ResNet), the
stem ("imagenet": 7x7/2 conv + 3x3/2 max-pool; "cifar": one 3x3 conv), the widths and the output stride.

Conventions (those of torchvision, so parameter counts and checkpoint layouts line up with it):
- convolutions have no bias; each is followed by batch normalization (scale and bias are parameters, the running
  statistics live in ``batch_stats``);
- the bottleneck strides in its 3x3 convolution (ResNet "v1.5"); the paper strides in the first 1x1 (same count);
- the shortcut is the identity when shapes match, else a strided 1x1 convolution + BN (the paper's option B).
  CIFAR ResNets default to option B too (``shortcut="B"``); the paper's CIFAR networks use option A (strided
  identity, zero-padded channels, no parameters), available as ``shortcut="A"``. Option B adds 2,752 parameters to
  every CIFAR ResNet (1x1 convs 16->32 and 32->64 with their BN).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, ClassVar, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

ModuleDef = Any

# He-normal with the fan-out, as torchvision initialises ResNet convolutions.
_CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _conv(features: int, k: int, *, strides: int = 1, dilation: int = 1, groups: int = 1, name: str) -> nn.Conv:
    """A k x k convolution without bias, padded so that it keeps the size at stride 1 (torchvision's padding)."""
    p = dilation * (k // 2)
    return nn.Conv(
        features,
        (k, k),
        strides=(strides, strides),
        padding=((p, p), (p, p)),
        kernel_dilation=(dilation, dilation),
        feature_group_count=groups,
        use_bias=False,
        kernel_init=_CONV_INIT,
        name=name,
    )


Norm = Literal["batch", "layer"]


def _norm(train: bool, name: str, zero: bool = False, kind: Norm = "batch") -> nn.Module:
    """Batch norm, or layer norm over each example's H x W x C units (course section 6.2) named ``ln*``."""
    scale_init = nn.initializers.zeros if zero else nn.initializers.ones
    if kind == "layer":
        # The convolutions stay without bias, as before batch norm: the norm's own per-channel shift follows.
        name = name.replace("bn", "ln")
        return nn.LayerNorm(epsilon=1e-5, reduction_axes=(-3, -2, -1), scale_init=scale_init, name=name)
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, scale_init=scale_init, name=name)


def _shortcut(x: jax.Array, features: int, strides: int, kind: str, train: bool, norm: Norm = "batch") -> jax.Array:
    """The identity if shapes match, else option B (1x1 conv + BN) or option A (strided, zero-padded identity).

    Called inside a block's compact ``__call__``: the projection's modules are that block's ``proj_conv`` and
    ``proj_bn``.
    """
    if strides == 1 and x.shape[-1] == features:
        return x
    if kind == "A":
        x = x[:, ::strides, ::strides, :]
        if features < x.shape[-1]:
            raise ValueError("option-A shortcuts cannot reduce channels")
        return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, features - x.shape[-1])))
    if kind != "B":
        raise ValueError(f"shortcut must be 'A' or 'B', got {kind!r}")
    x = _conv(features, 1, strides=strides, name="proj_conv")(x)
    return _norm(train, "proj_bn", kind=norm)(x)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018): x * sigmoid(W2 relu(W1 mean_hw(x) + b1) + b2), per channel.

    Attributes:
      reduction: ratio r of channels to the hidden width (at least 1 hidden unit).
    """

    reduction: int = 16

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        s = jnp.mean(x, axis=(1, 2))  # squeeze: global average pooling
        s = nn.relu(nn.Dense(max(1, channels // self.reduction), name="fc1")(s))
        s = nn.sigmoid(nn.Dense(channels, name="fc2")(s))  # excitation: one gate in (0, 1) per channel
        return x * s[:, None, None, :]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BN; relu(branch(x) + shortcut(x)).

    Attributes:
      features: output channels.
      strides: stride of the first convolution (and of the shortcut projection).
      dilation: dilation of both convolutions.
      se_reduction: squeeze-and-excitation on the branch with this reduction (0: none).
      zero_init_residual: start the branch's last BN scale at zero, so the block starts as relu(shortcut(x)).
      shortcut: "B" (1x1 projection) or "A" (zero-padded identity) where shapes change.
      norm: "batch" or "layer" normalization after each convolution.
    """

    features: int
    strides: int = 1
    dilation: int = 1
    se_reduction: int = 0
    zero_init_residual: bool = False
    shortcut: str = "B"
    norm: Norm = "batch"
    expansion: ClassVar[int] = 1

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        y = _conv(self.features, 3, strides=self.strides, dilation=self.dilation, name="conv1")(x)
        y = nn.relu(_norm(train, "bn1", kind=self.norm)(y))
        y = _conv(self.features, 3, dilation=self.dilation, name="conv2")(y)
        y = _norm(train, "bn2", zero=self.zero_init_residual, kind=self.norm)(y)
        if self.se_reduction:
            y = SqueezeExcite(self.se_reduction, name="se")(y)
        return nn.relu(y + _shortcut(x, self.features, self.strides, self.shortcut, train, self.norm))


class BottleneckBlock(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt), 1x1 expand to 4 x features, each with BN; relu(branch + shortcut).

    Attributes:
      features: the stage's base width; the block outputs ``4 * features`` channels.
      strides: stride of the 3x3 convolution (and of the shortcut projection).
      dilation: dilation of the 3x3 convolution.
      groups: groups of the 3x3 convolution (ResNeXt's cardinality).
      base_width: ResNeXt's width per group at the first stage (64 with one group is plain ResNet); the 3x3 has
        ``int(features * base_width / 64) * groups`` channels.
      se_reduction: squeeze-and-excitation on the branch with this reduction (0: none).
      zero_init_residual: start the branch's last BN scale at zero, so the block starts as relu(shortcut(x)).
      shortcut: "B" (1x1 projection) or "A" (zero-padded identity) where shapes change.
      norm: "batch" or "layer" normalization after each convolution.
    """

    features: int
    strides: int = 1
    dilation: int = 1
    groups: int = 1
    base_width: int = 64
    se_reduction: int = 0
    zero_init_residual: bool = False
    shortcut: str = "B"
    norm: Norm = "batch"
    expansion: ClassVar[int] = 4

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        width = int(self.features * self.base_width / 64) * self.groups
        out = self.features * self.expansion
        y = nn.relu(_norm(train, "bn1", kind=self.norm)(_conv(width, 1, name="conv1")(x)))
        y = _conv(width, 3, strides=self.strides, dilation=self.dilation, groups=self.groups, name="conv2")(y)
        y = nn.relu(_norm(train, "bn2", kind=self.norm)(y))
        y = _norm(train, "bn3", zero=self.zero_init_residual, kind=self.norm)(_conv(out, 1, name="conv3")(y))
        if self.se_reduction:
            y = SqueezeExcite(self.se_reduction, name="se")(y)
        return nn.relu(y + _shortcut(x, out, self.strides, self.shortcut, train, self.norm))


class ResNet(nn.Module):
    """A residual network: stem, stages of blocks (stride 2 at the first block of every stage but the first),
    global average pooling and a linear classifier.

    Attributes:
      num_classes: number of output scores.
      stage_sizes: blocks per stage.
      block: the block class (``BasicBlock``, ``BottleneckBlock`` or a ``partial`` of one), called as
        ``block(features, strides=, dilation=, zero_init_residual=, shortcut=, norm=)``.
      widths: base width of each stage (the stem has ``widths[0]`` channels).
      stem: "imagenet" (7x7/2 conv, BN, ReLU, 3x3/2 max-pool: stride 4) or "cifar" (3x3 conv, BN, ReLU: stride 1).
      zero_init_residual: zero-initialise the last BN scale of every residual branch (Goyal et al. 2017).
      shortcut: "B" (1x1 projection) or "A" (zero-padded identity) where a block changes shape.
      output_stride: if set (a power of two), stages whose stride would take the network's total stride past it
        keep stride 1 and instead double the dilation of their (and all later) 3x3 convolutions (DeepLab's
        atrous ResNet). Unlike torchvision, a dilated stage's first block already uses the new dilation.
      features_only: return the last feature map (N, H / stride, W / stride, C) instead of logits.
      return_stages: return the output of every stage, ``{level: map}`` with ``level = log2(stride)`` (C2..C5 of
        an ImageNet ResNet, the inputs of a feature pyramid), instead of logits.
      norm: "batch" (the papers') or "layer": the course's layer normalization (section 6.2), each example's mean
        and variance over all the H x W x C units of a layer, then a scale and shift per channel.
    """

    num_classes: int
    stage_sizes: Sequence[int]
    block: Callable[..., nn.Module]
    widths: Sequence[int] = (64, 128, 256, 512)
    stem: str = "imagenet"
    zero_init_residual: bool = False
    shortcut: str = "B"
    output_stride: int | None = None
    features_only: bool = False
    return_stages: bool = False
    norm: Norm = "batch"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        if self.stem == "imagenet":
            x = _conv(self.widths[0], 7, strides=2, name="stem_conv")(x)
            x = nn.relu(_norm(train, "stem_bn", kind=self.norm)(x))
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
            stride = 4
        elif self.stem == "cifar":
            x = nn.relu(_norm(train, "stem_bn", kind=self.norm)(_conv(self.widths[0], 3, name="stem_conv")(x)))
            stride = 1
        else:
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {self.stem!r}")
        if self.output_stride is not None and (
            self.output_stride < stride or self.output_stride & (self.output_stride - 1)
        ):
            raise ValueError(f"output_stride must be a power of two >= the stem's stride {stride}")
        dilation = 1
        stages = {}
        for i, (size, width) in enumerate(zip(self.stage_sizes, self.widths, strict=True)):
            strides = 1 if i == 0 else 2
            if strides > 1 and self.output_stride is not None and stride >= self.output_stride:
                dilation *= strides
                strides = 1
            stride *= strides
            for j in range(size):
                x = self.block(
                    width,
                    strides=strides if j == 0 else 1,
                    dilation=dilation,
                    zero_init_residual=self.zero_init_residual,
                    shortcut=self.shortcut,
                    norm=self.norm,
                    name=f"stage{i + 1}_block{j}",
                )(x, train=train)
            stages[stride.bit_length() - 1] = x
        if self.return_stages:
            return stages
        if self.features_only:
            return x
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name="head")(x)


ResNeXtBlock = partial(BottleneckBlock, groups=32, base_width=4)  # 32x4d
SEBottleneckBlock = partial(BottleneckBlock, se_reduction=16)

# ImageNet ResNets (He et al. 2016, Table 1).
ResNet18 = partial(ResNet, stage_sizes=(2, 2, 2, 2), block=BasicBlock)
ResNet34 = partial(ResNet, stage_sizes=(3, 4, 6, 3), block=BasicBlock)
ResNet50 = partial(ResNet, stage_sizes=(3, 4, 6, 3), block=BottleneckBlock)
ResNet101 = partial(ResNet, stage_sizes=(3, 4, 23, 3), block=BottleneckBlock)
ResNet152 = partial(ResNet, stage_sizes=(3, 8, 36, 3), block=BottleneckBlock)
ResNeXt50_32x4d = partial(ResNet, stage_sizes=(3, 4, 6, 3), block=ResNeXtBlock)
SEResNet50 = partial(ResNet, stage_sizes=(3, 4, 6, 3), block=SEBottleneckBlock)
DilatedResNet50 = partial(ResNet50, output_stride=8)

# CIFAR ResNets (He et al. 2016, Sec. 4.2): depth 6n + 2, three stages of n basic blocks with 16/32/64 channels.
_CIFARResNet = partial(ResNet, block=BasicBlock, widths=(16, 32, 64), stem="cifar")
ResNet20 = partial(_CIFARResNet, stage_sizes=(3, 3, 3))
ResNet32 = partial(_CIFARResNet, stage_sizes=(5, 5, 5))
ResNet44 = partial(_CIFARResNet, stage_sizes=(7, 7, 7))
ResNet56 = partial(_CIFARResNet, stage_sizes=(9, 9, 9))
ResNet110 = partial(_CIFARResNet, stage_sizes=(18, 18, 18))

# A tiny network for fast tests: CIFAR stem, one basic block per stage, 8/16/32 channels.
ResNetTiny = partial(ResNet, stage_sizes=(1, 1, 1), block=BasicBlock, widths=(8, 16, 32), stem="cifar")

#: Zoo ResNets that detectors and segmenters use as backbones (``return_stages=True``: C2..C5 at strides
#: 4..32); ``_resnet_tiny`` (8 channels a stage, one basic block each) is for tests.
BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "resnet18": ResNet18,
    "resnet34": ResNet34,
    "resnet50": ResNet50,
    "resnet101": ResNet101,
    "_resnet_tiny": partial(ResNet, stage_sizes=(1, 1, 1, 1), block=BasicBlock, widths=(8, 8, 8, 8)),
}

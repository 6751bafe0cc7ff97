"""RetinaNet (Lin et al. 2017, "Focal Loss for Dense Object Detection"): a backbone, an FPN and two shared subnets.

The network only: anchors, matching, the focal loss and decoding live in :mod:`mlcv.tasks.retinanet`.

- Backbone: a plain stack of stride-2 residual stages (CenterNet's ``_Residual`` block, as in
  :mod:`mlcv.models.centernet`); stage ``i`` (from 1) has stride ``2 ** i``, its output is ``C_i``. The paper
  uses a ResNet-50/101; on 96x96 scenes a few thousand images long this small stack trains in minutes on a CPU.
- FPN (Lin et al. 2017, "Feature Pyramid Networks"): a 1x1 lateral convolution of each ``C_l``, a top-down path
  that upsamples the coarser level (nearest, x2) and adds it, and a 3x3 output convolution per level: ``P_l``.
- Two subnets shared by every level: the classification subnet (``head_convs`` 3x3 convolutions with ReLU, then
  ``num_anchors * num_classes`` sigmoid logits whose bias is the prior ``-log((1 - pi) / pi)``, ``pi = 0.01``, so
  that the focal loss of the ~10^3 background anchors does not swamp the first steps) and the box subnet (the
  same, then ``num_anchors * 4`` deltas ``(t_y, t_x, t_h, t_w)``). Weights of the subnets are N(0, 0.01), biases
  0, as in the paper.

Departures from the paper:

- levels ``P3``-``P5`` (strides 8, 16, 32) instead of ``P3``-``P7``: on 96x96 images ``P5`` is already 3x3 and
  the largest digit is 40 px, so ``P6``/``P7`` (strides 64, 128; anchors of 256-812 px) would hold nothing;
  ``min_level`` and ``max_level`` choose others (the deepest stage is ``max_level``);
- ``P5`` comes from ``C5`` (the paper's ``P6`` is a strided conv of ``C5``, dropped with it);
- ``fpn=False`` (the single-level ablation): the backbone stops at ``C_{min_level}``, which a lateral 1x1 and a 3x3
  output convolution turn into the one level the subnets see, with no top-down path; the task then puts every
  anchor size on that level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

from mlcv.models import resnet
from mlcv.models.centernet import _Residual

#: The classification prior pi: every anchor starts with foreground probability 0.01 for every class.
PRIOR_PROBABILITY = 0.01

_HEAD_INIT = nn.initializers.normal(stddev=0.01)


def level_shapes(image_shape: Sequence[int], strides: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """The ``(h, w)`` of each level of stride ``s`` for an ``image_shape`` ``(H, W)`` input: ``ceil(H / s)``.

    SAME-padded stride-2 convolutions give ``ceil`` at each halving, which composes to ``ceil(H / s)``.
    """
    return tuple((-(-int(image_shape[0]) // s), -(-int(image_shape[1]) // s)) for s in strides)


class RetinaNet(nn.Module):
    """Backbone, FPN and the two subnets (see the module docstring).

    ``__call__(image [B, H, W, C])`` returns ``{"class_logits": [B, N, num_classes], "box_deltas": [B, N, 4]}``
    with ``N = sum_l h_l w_l num_anchors``, ordered level by level (finest first), then cells row-major, then
    anchors: the order of :func:`mlcv.ops.anchors.multilevel_anchors` on the same levels.

    Attributes:
      num_classes: object classes ``K`` (no background class: background is all ``K`` sigmoids at 0).
      num_anchors: anchors ``A`` per cell of every level (sizes x aspect ratios of that level).
      stage_features: channels of each stride-2 stage; there must be ``max_level`` of them.
      blocks_per_stage: residual blocks per stage.
      fpn_features: channels of the pyramid and of the subnets (the paper's 256).
      head_convs: 3x3 convolutions of each subnet before its output (the paper's 4).
      min_level, max_level: pyramid levels ``P_min..P_max`` (stride ``2 ** l``).
      fpn: False for the single-level ablation (level ``min_level`` only, no top-down path).
      backbone: "residual" (the stages above) or a ResNet of the zoo (``resnet18``, ``resnet50``, ``resnet101``;
        ``_resnet_tiny`` for tests) giving C2..C5; levels above C5 are the paper's extra levels: ``P6`` a 3x3
        stride-2 convolution of ``C5``, ``P7`` one of ``relu(P6)``.
    """

    num_classes: int
    num_anchors: int = 9
    stage_features: Sequence[int] = (32, 64, 96, 128, 128)
    blocks_per_stage: int = 1
    fpn_features: int = 64
    head_convs: int = 2
    min_level: int = 3
    max_level: int = 5
    fpn: bool = True
    backbone: str = "residual"

    @property
    def levels(self) -> tuple[int, ...]:
        """The pyramid levels the subnets see (``(min_level,)`` without the FPN)."""
        return tuple(range(self.min_level, self.max_level + 1)) if self.fpn else (self.min_level,)

    @property
    def strides(self) -> tuple[int, ...]:
        """The stride of each level, ``2 ** level``."""
        return tuple(2**level for level in self.levels)

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> dict[str, jax.Array]:
        feats = self._backbone(x, train)
        deepest = max(feats)
        if self.min_level > deepest or self.min_level < min(feats):
            raise ValueError(f"RetinaNet: min_level {self.min_level} is not a level of the backbone {sorted(feats)}")
        pyramid = {}
        top = None
        for level in reversed([lv for lv in self.levels if lv <= deepest]):  # coarsest first: the top-down path
            y = nn.Conv(self.fpn_features, (1, 1), name=f"lateral{level}")(feats[level])
            if top is not None:
                b, h, w, c = top.shape
                up = jax.image.resize(top, (b, 2 * h, 2 * w, c), "nearest")[:, : y.shape[1], : y.shape[2]]
                y = y + up
            top = y
            pyramid[level] = nn.Conv(self.fpn_features, (3, 3), name=f"output{level}")(y)
        below = feats[deepest]
        for level in [lv for lv in self.levels if lv > deepest]:  # P6 from C5, P7 from relu(P6), as the paper
            below = nn.Conv(self.fpn_features, (3, 3), strides=(2, 2), name=f"extra{level}")(below)
            pyramid[level] = below
            below = nn.relu(below)
        prior = -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
        # One set of modules called on every level: the subnets' weights are shared across the pyramid.
        class_net = _Subnet(
            self.fpn_features, self.head_convs, self.num_anchors * self.num_classes, prior, name="class_subnet"
        )
        box_net = _Subnet(self.fpn_features, self.head_convs, self.num_anchors * 4, 0.0, name="box_subnet")
        logits, deltas = [], []
        for level in self.levels:
            p = pyramid[level]
            b, h, w, _ = p.shape
            logits.append(class_net(p).reshape(b, h * w * self.num_anchors, self.num_classes))
            deltas.append(box_net(p).reshape(b, h * w * self.num_anchors, 4))
        # Losses in float32 under bf16.
        return {
            "class_logits": jnp.concatenate(logits, axis=1).astype(jnp.float32),
            "box_deltas": jnp.concatenate(deltas, axis=1).astype(jnp.float32),
        }

    def _backbone(self, x: jax.Array, train: bool) -> dict[int, jax.Array]:
        """``{level: C_level}``: the residual stages up to ``max_level``, or a zoo ResNet's C2..C5."""
        if self.backbone != "residual":
            if self.backbone not in resnet.BACKBONES:
                raise ValueError(
                    f"RetinaNet: backbone {self.backbone!r} is not one of residual, {', '.join(resnet.BACKBONES)}"
                )
            return resnet.BACKBONES[self.backbone](num_classes=1, return_stages=True, name="backbone")(x, train=train)
        if not 1 <= self.min_level <= self.max_level <= len(self.stage_features):
            raise ValueError(
                f"RetinaNet: levels {self.min_level}..{self.max_level} need 1 <= min <= max <= "
                f"{len(self.stage_features)} (the number of stages)"
            )
        feats = {}
        for i, f in enumerate(self.stage_features[: self.levels[-1]]):
            x = _Residual(f, stride=2, name=f"stage{i + 1}_0")(x, train)
            for j in range(1, self.blocks_per_stage):
                x = _Residual(f, name=f"stage{i + 1}_{j}")(x, train)
            feats[i + 1] = x
        return feats


class _Subnet(nn.Module):
    """``depth`` 3x3 convolutions with ReLU, then a 3x3 convolution to ``outputs`` channels (bias ``bias``)."""

    features: int
    depth: int
    outputs: int
    bias: float

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i in range(self.depth):
            x = nn.relu(nn.Conv(self.features, (3, 3), kernel_init=_HEAD_INIT, name=f"conv{i}")(x))
        out = nn.Conv(
            self.outputs,
            (3, 3),
            kernel_init=_HEAD_INIT,
            bias_init=nn.initializers.constant(self.bias),
            name="out",
        )
        return out(x)


#: A few thousand parameters, for tests: the default levels P3-P5 on 8-channel stages, one conv per subnet.
RetinaNetTiny = partial(RetinaNet, stage_features=(8, 8, 8, 8, 8), fpn_features=8, head_convs=1)

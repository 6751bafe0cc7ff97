"""Faster R-CNN with a feature pyramid (Ren et al. 2015; Lin et al. 2017, FPN §4): the network of course §10.2.

The network only, in two stages that the task runs with proposals in between (:mod:`mlcv.tasks.faster_rcnn`
holds the anchors, proposals, targets, losses and decoding):

- :meth:`FasterRCNN.rpn`: backbone, pyramid and region proposal network. The backbone is a plain stack of
  stride-2 residual stages (CenterNet's ``_Residual`` block, as :mod:`mlcv.models.retinanet`); stage ``i`` (from
  1) gives ``C_i`` of stride ``2 ** i``. The FPN (:class:`mlcv.models.fpn.FPN`) turns ``C_min..C_max`` into
  ``P_min..P_max``. The RPN head is shared by every level, as in the FPN paper: a 3x3 convolution with ReLU, then
  1x1 convolutions to ``k`` objectness logits (one sigmoid per anchor; the paper's original 2k-way softmax is
  the same model) and ``4k`` anchor corrections ``(t_y, t_x, t_h, t_w)`` per location.
- :meth:`FasterRCNN.roi_head`: the second stage. Each RoI is pooled to ``7 x 7`` by RoIAlign (Mask R-CNN's,
  ``aligned=True``, :func:`mlcv.ops.roi.roi_align`) from the one level that FPN's eq. 1 assigns it
  (:func:`mlcv.ops.roi.fpn_level`), then two fully connected layers with ReLU (the paper's "2fc" head) feed a
  ``K + 1``-way softmax (class 0 the background, object classes ``1..K``) and ``4K`` class-specific box deltas.

Choices for the course's 96x96 digit scenes (digits of 10-36 px, 8-45 px under the training scale jitter), and
departures from the papers:

- levels ``P2``-``P5`` (strides 4-32: 24x24 down to 3x3 cells), not ``P2``-``P6``: ``P6`` (stride 64) would be
  2x2 cells of 128 px anchors on a 96 px image. ``P2`` is kept because the head reads the digits' strokes there:
  a 12 px digit is 3 cells of ``P2`` and 1.5 of ``P3``;
- eq. 1 of FPN, ``k = floor(k0 + log2(sqrt(w h) / 224))``, sends a RoI to the level where it spans 14-28 cells
  (224 / 16 = 14 at ``k0 = 4``), a scale made for 800 px images: on 96 px scenes every digit would pool from
  ``P2``. The default ``canonical_size = 56`` keeps ``k0 = 4`` and makes a RoI span 3.5-7 cells of its level
  (half a cell to one cell a bin): digits under 28 px pool from ``P2``, 28-56 px from ``P3``, larger proposals
  from ``P4``/``P5``. ``canonical_size=224`` is the paper's rule (all digits on ``P2``), an ablation;
- widths: pyramid and RPN ``fpn_features = 64`` (the paper's 256), the box head's ``head_features = 256`` (the
  paper's 1024); no ``P6`` (see :mod:`mlcv.models.fpn`); a ResNet-50 in the paper;
- static shapes: RoIAlign pools every RoI from every level and keeps the assigned level's result (the
  reference gathers each level's RoIs, a dynamic count); the levels after ``P2`` add about a third to its cost.

Initialisation as detectron and torchvision: RPN convolutions N(0, 0.01), class scores N(0, 0.01), box deltas
N(0, 0.001), biases 0 (the box head's hidden layers keep Flax's LeCun-normal default).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

from mlcv.models import resnet
from mlcv.models.centernet import _Residual
from mlcv.models.fpn import FPN
from mlcv.ops.roi import fpn_level, roi_align

_RPN_INIT = nn.initializers.normal(stddev=0.01)


class _Backbone(nn.Module):
    """Residual stages ``C_1..C_max`` and the pyramid ``P_min..P_max`` (finest first)."""

    stage_features: Sequence[int]
    blocks_per_stage: int
    fpn_features: int
    min_level: int
    max_level: int
    backbone: str = "residual"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, ...]:
        if self.backbone != "residual":
            # A zoo ResNet: C2..C5 into the pyramid; P6 (the FPN paper's, for the RPN only) subsamples P5 by 2.
            stages = resnet.BACKBONES[self.backbone](num_classes=1, return_stages=True, name="resnet")(x, train=train)
            top = min(self.max_level, max(stages))
            pyramid = FPN(self.fpn_features, name="fpn")([stages[lv] for lv in range(self.min_level, top + 1)])
            for _ in range(top, self.max_level):
                pyramid = (*pyramid, pyramid[-1][:, ::2, ::2])
            return pyramid
        feats = []
        for i, f in enumerate(self.stage_features[: self.max_level]):
            x = _Residual(f, stride=2, name=f"stage{i + 1}_0")(x, train)
            for j in range(1, self.blocks_per_stage):
                x = _Residual(f, name=f"stage{i + 1}_{j}")(x, train)
            feats.append(x)
        return FPN(self.fpn_features, name="fpn")(feats[self.min_level - 1 :])


class _RPNHead(nn.Module):
    """3x3 conv with ReLU, then ``k`` objectness logits and ``4k`` deltas per location, flattened per anchor."""

    features: int
    num_anchors: int

    @nn.compact
    def __call__(self, p: jax.Array) -> tuple[jax.Array, jax.Array]:
        b, h, w, _ = p.shape
        a = self.num_anchors
        y = nn.relu(nn.Conv(self.features, (3, 3), kernel_init=_RPN_INIT, name="conv")(p))
        logits = nn.Conv(a, (1, 1), kernel_init=_RPN_INIT, name="objectness")(y)
        deltas = nn.Conv(4 * a, (1, 1), kernel_init=_RPN_INIT, name="deltas")(y)
        # Row-major cells, then anchors: the order of mlcv.ops.anchors.multilevel_anchors.
        return logits.reshape(b, h * w * a), deltas.reshape(b, h * w * a, 4)


class _BoxHead(nn.Module):
    """Two FC layers with ReLU on the pooled RoIs, then ``K + 1`` class logits and ``4K`` box deltas."""

    num_classes: int
    features: int

    @nn.compact
    def __call__(self, pooled: jax.Array) -> tuple[jax.Array, jax.Array]:
        b, r = pooled.shape[:2]
        x = pooled.reshape(b, r, -1)
        x = nn.relu(nn.Dense(self.features, name="fc6")(x))
        x = nn.relu(nn.Dense(self.features, name="fc7")(x))
        k = self.num_classes
        logits = nn.Dense(k + 1, kernel_init=nn.initializers.normal(0.01), name="cls_score")(x)
        deltas = nn.Dense(4 * k, kernel_init=nn.initializers.normal(0.001), name="bbox_pred")(x)
        return logits, deltas.reshape(b, r, k, 4)


class FasterRCNN(nn.Module):
    """Backbone + FPN + RPN (:meth:`rpn`), RoIAlign + box head (:meth:`roi_head`); see the module docstring.

    The input's height and width should be multiples of ``2 ** max_level`` (otherwise the levels are the
    ``ceil`` of each halving, :func:`mlcv.models.retinanet.level_shapes`).

    Attributes:
      num_classes: object classes ``K``; the classifier has ``K + 1`` outputs, index 0 the background.
      num_anchors: anchors ``k`` per location of every level (sizes x aspect ratios; the task sets it).
      stage_features: channels of each stride-2 stage; there must be at least ``max_level`` of them.
      blocks_per_stage: residual blocks per stage.
      fpn_features: channels of the pyramid and of the RPN's 3x3 convolution.
      head_features: width of the box head's two FC layers.
      min_level, max_level: pyramid levels ``P_min..P_max`` (stride ``2 ** l``).
      pool_size: RoIAlign's output ``pool_size x pool_size``.
      sampling_ratio: RoIAlign's samples per bin and axis.
      canonical_size, canonical_level: FPN eq. 1's ``224`` and ``k0``: a RoI of side ``canonical_size`` pools
        from ``P_k0``, one half as wide from the level below.
      backbone: "residual" (the stages above) or a ResNet of ``mlcv.models.resnet.BACKBONES`` (C2..C5, for the
        paper recipes; levels above 5 subsample ``P5`` by 2, the FPN paper's ``P6``).
      roi_max_level: the coarsest level RoIs pool from (None: ``max_level``); the FPN paper's RPN sees
        ``P2``-``P6`` while its RoIs pool from ``P2``-``P5``.
    """

    num_classes: int
    num_anchors: int = 3
    stage_features: Sequence[int] = (32, 64, 96, 128, 128)
    blocks_per_stage: int = 1
    fpn_features: int = 64
    head_features: int = 256
    min_level: int = 2
    max_level: int = 5
    pool_size: int = 7
    sampling_ratio: int = 2
    canonical_size: float = 56.0
    canonical_level: int = 4
    backbone: str = "residual"
    roi_max_level: int | None = None

    def setup(self) -> None:
        if self.backbone != "residual":
            if self.backbone not in resnet.BACKBONES or self.min_level < 2:
                raise ValueError(f"FasterRCNN: backbone {self.backbone!r} with min_level {self.min_level}: use one of "
                                 f"residual, {', '.join(resnet.BACKBONES)} (ResNets start at level 2)")  # fmt: skip
        elif not 1 <= self.min_level <= self.max_level <= len(self.stage_features):
            raise ValueError(
                f"FasterRCNN: levels {self.min_level}..{self.max_level} need 1 <= min <= max <= "
                f"{len(self.stage_features)} (the number of stages)"
            )
        self.features = _Backbone(
            self.stage_features, self.blocks_per_stage, self.fpn_features, self.min_level, self.max_level, self.backbone
        )
        self.rpn_head = _RPNHead(self.fpn_features, self.num_anchors)
        self.box_head = _BoxHead(self.num_classes, self.head_features)

    @property
    def levels(self) -> tuple[int, ...]:
        """The pyramid levels ``min_level..max_level``."""
        return tuple(range(self.min_level, self.max_level + 1))

    @property
    def strides(self) -> tuple[int, ...]:
        """The stride of each level, ``2 ** level``."""
        return tuple(2**level for level in self.levels)

    def rpn(self, x: jax.Array, *, train: bool = False) -> dict[str, jax.Array | tuple[jax.Array, ...]]:
        """Stage one on images ``[B, H, W, C]``: ``pyramid`` (the ``P`` maps, finest first), ``rpn_logits``
        ``[B, N]`` and ``rpn_deltas`` ``[B, N, 4]`` (float32), ``N`` the anchors of all levels, level by level.
        """
        pyramid = self.features(x, train)
        logits, deltas = zip(*(self.rpn_head(p) for p in pyramid), strict=True)
        return {
            "pyramid": pyramid,
            "rpn_logits": jnp.concatenate(logits, axis=1).astype(jnp.float32),
            "rpn_deltas": jnp.concatenate(deltas, axis=1).astype(jnp.float32),
        }

    def pool(self, pyramid: Sequence[jax.Array], rois: jax.Array, size: int | None = None) -> jax.Array:
        """RoIAlign features ``[B, R, S, S, C]`` of RoIs ``[B, R, 4]`` (input pixels), each from its level;
        ``S`` is ``size`` (None: ``pool_size``; Mask R-CNN's mask head pools 14x14).
        """
        top = self.max_level if self.roi_max_level is None else min(self.roi_max_level, self.max_level)
        level = fpn_level(rois, self.canonical_level, self.canonical_size, self.min_level, top)
        size = (self.pool_size,) * 2 if size is None else (int(size),) * 2
        out = None
        for lvl, p in zip(self.levels[: top - self.min_level + 1], pyramid, strict=False):
            align = partial(roi_align, output_size=size, spatial_scale=1.0 / 2**lvl, sampling_ratio=self.sampling_ratio)
            pooled = jax.vmap(align)(p, rois)
            here = (level == lvl)[..., None, None, None]
            out = jnp.where(here, pooled, 0) if out is None else jnp.where(here, pooled, out)
        return out

    def roi_head(self, pyramid: Sequence[jax.Array], rois: jax.Array, *, train: bool = False) -> dict[str, jax.Array]:
        """Stage two on ``rois [B, R, 4]``: ``class_logits [B, R, K + 1]`` (0 = background) and ``box_deltas``
        ``[B, R, K, 4]`` (object class ``c`` in row ``c - 1``), float32. ``train`` is unused (no batch norm or
        dropout in the head) and kept for the stage-one signature.
        """
        del train
        logits, deltas = self.box_head(self.pool(pyramid, jax.lax.stop_gradient(rois)))
        return {"class_logits": logits.astype(jnp.float32), "box_deltas": deltas.astype(jnp.float32)}

    def __call__(self, x: jax.Array, *, train: bool = False) -> dict[str, jax.Array]:
        """Both stages, the second on one RoI an image, the whole image (so that init builds every parameter)."""
        out = self.rpn(x, train=train)
        b, h, w = x.shape[:3]
        whole = jnp.broadcast_to(jnp.array([0.0, 0.0, h, w], jnp.float32), (b, 1, 4))
        head = self.roi_head(out.pop("pyramid"), whole, train=train)
        return {**out, **head}


#: A few thousand parameters, for tests: 8-channel stages and pyramid, 16-wide box head.
FasterRCNNTiny = partial(FasterRCNN, stage_features=(8, 8, 8, 8, 8), fpn_features=8, head_features=16)

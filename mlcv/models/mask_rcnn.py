"""Mask R-CNN (He et al. 2017): Faster R-CNN with FPN plus a mask branch, the network of course §11.4.

:class:`MaskRCNN` is :class:`mlcv.models.faster_rcnn.FasterRCNN` (the same backbone, pyramid, RPN and box head,
under the same parameter names) with a third method, :meth:`MaskRCNN.mask_logits`, the paper's FPN mask head:

- RoIAlign ``14 x 14`` (``mask_pool_size``) from the pyramid level that FPN's eq. 1 assigns each box, the box
  head's rule (:meth:`FasterRCNN.pool`, the same ``canonical_size``);
- four 3x3 convolutions with ReLU, ``mask_features`` wide (the paper's 256; 64 keeps the CPU runs short);
- a 2x2 stride-2 transposed convolution with ReLU, to ``28 x 28``;
- a 1x1 convolution to ``K`` mask logits, one per object class (channel ``c`` for the dataset's class ``c``):
  each read through its own sigmoid, no softmax over the classes, so that classes do not compete for a pixel
  (the paper's decoupling of mask and class; the box head's classifier picks the channel).

The task (:mod:`mlcv.tasks.mask_rcnn`) runs the head on the positive training RoIs and, at inference, on the
final detections. Initialisation as detectron2: the convolutions He-normal (fan-out), the logits N(0, 0.001),
biases 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

from mlcv.models.faster_rcnn import FasterRCNN

_HE_FAN_OUT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class _MaskHead(nn.Module):
    """3x3 convs with ReLU on pooled RoIs ``[B, R, S, S, C]``, a transposed conv to ``2S``: ``[B, R, 2S, 2S, K]``."""

    num_classes: int
    features: int
    num_convs: int = 4

    @nn.compact
    def __call__(self, pooled: jax.Array) -> jax.Array:
        b, r = pooled.shape[:2]
        x = pooled.reshape(b * r, *pooled.shape[2:])
        for i in range(self.num_convs):
            x = nn.relu(nn.Conv(self.features, (3, 3), kernel_init=_HE_FAN_OUT, name=f"conv{i + 1}")(x))
        # VALID: each input cell places its own 2x2 block, (S - 1) * 2 + 2 = 2S rows.
        up = nn.ConvTranspose(
            self.features, (2, 2), strides=(2, 2), padding="VALID", kernel_init=_HE_FAN_OUT, name="deconv"
        )
        x = nn.relu(up(x))
        x = nn.Conv(self.num_classes, (1, 1), kernel_init=nn.initializers.normal(0.001), name="logits")(x)
        return x.reshape(b, r, *x.shape[1:])


class MaskRCNN(FasterRCNN):
    """:class:`FasterRCNN` plus the mask head of :meth:`mask_logits`; see the module docstring.

    Attributes (besides :class:`FasterRCNN`'s):
      mask_pool_size: RoIAlign's ``S x S`` for the mask head (14); the masks are ``2S x 2S`` (28).
      mask_features: width of the mask head's convolutions and transposed convolution (256 in the paper).
      mask_convs: its 3x3 convolutions (4).
    """

    mask_pool_size: int = 14
    mask_features: int = 256
    mask_convs: int = 4

    def setup(self) -> None:
        super().setup()
        self.mask_head = _MaskHead(self.num_classes, self.mask_features, self.mask_convs)

    @property
    def mask_size(self) -> int:
        """The side of the predicted masks, ``2 * mask_pool_size``."""
        return 2 * self.mask_pool_size

    def mask_logits(self, pyramid: Sequence[jax.Array], boxes: jax.Array) -> jax.Array:
        """Per-class mask logits ``[B, R, 2S, 2S, K]`` (float32) in boxes ``[B, R, 4]`` (input pixels).

        No gradient flows into the box coordinates (they are proposals or detections), only into the features.
        """
        pooled = self.pool(pyramid, jax.lax.stop_gradient(boxes), self.mask_pool_size)
        return self.mask_head(pooled).astype(jnp.float32)

    def __call__(self, x: jax.Array, *, train: bool = False) -> dict[str, jax.Array]:
        """Both stages and the mask head, on one RoI an image, the whole image (so that init builds every parameter)."""
        out = self.rpn(x, train=train)
        b, h, w = x.shape[:3]
        whole = jnp.broadcast_to(jnp.array([0.0, 0.0, h, w], jnp.float32), (b, 1, 4))
        pyramid = out.pop("pyramid")
        return {**out, **self.roi_head(pyramid, whole, train=train), "mask_logits": self.mask_logits(pyramid, whole)}


#: For tests: :data:`mlcv.models.faster_rcnn.FasterRCNNTiny` with an 8-wide mask head.
MaskRCNNTiny = partial(MaskRCNN, stage_features=(8, 8, 8, 8, 8), fpn_features=8, head_features=16, mask_features=8)

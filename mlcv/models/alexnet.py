"""AlexNet (Krizhevsky et al. 2012) and ZFNet (Zeiler & Fergus 2014), single-tower (no two-GPU grouping).

Layer table (AlexNet, the course's version, one tower of 96/256/384/384/256 channels):

  conv1 96 x 11x11 s4 p2 -> ReLU -> [LRN] -> max-pool 3 s2
  conv2 256 x 5x5 p2     -> ReLU -> [LRN] -> max-pool 3 s2
  conv3 384 x 3x3 p1 -> conv4 384 x 3x3 p1 -> conv5 256 x 3x3 p1 -> max-pool 3 s2
  fc6 4096 -> dropout -> fc7 4096 -> dropout -> fc8 num_classes

The paper says 224x224 inputs, but 11x11 stride-4 filters give the quoted 55x55 maps only on 227x227 inputs
without padding ((227 - 11) / 4 + 1 = 55) or on 224x224 inputs with padding 2 (torchvision's choice). With the
table's padding 2 on 227x227 inputs conv1 gives 56x56; every one of these choices pools down to the same 6x6x256
map before fc6, so the parameter count (62,378,344 at 1000 classes) is the same. ``conv1=(11, 4, 0)`` gives the
paper's 55x55 on 227x227.

The fully connected layers are ``Dense`` layers on the flattened last feature map (no adaptive pooling), so the
input size fixes fc6's fan-in and the parameter count: 227x227 and 224x224 give 6x6x256 = 9216 inputs.

Local response normalization (LRN) is off by default: later work (VGG, Simonyan & Zisserman 2015, Sec. 4.1)
found it does not help, and batch normalization replaced it.
"""

from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp


def local_response_norm(
    x: jax.Array, size: int = 5, k: float = 2.0, alpha: float = 1e-4, beta: float = 0.75
) -> jax.Array:
    """AlexNet's LRN across channels (paper Sec. 3.3): b_i = a_i / (k + alpha * sum_{j near i} a_j^2) ** beta.

    The sum runs over ``size`` adjacent channels centred on i (clipped at the ends). The paper's alpha multiplies
    the plain sum; PyTorch's ``LocalResponseNorm`` divides alpha by ``size`` instead.
    """
    sq = jnp.square(x)
    half = size // 2
    padded = jnp.pad(sq, [(0, 0)] * (x.ndim - 1) + [(half, size - 1 - half)])
    window = sum(padded[..., j : j + x.shape[-1]] for j in range(size))
    return x / (k + alpha * window) ** beta


class AlexNet(nn.Module):
    """AlexNet; ZFNet is the same network with another first two convolutions and pooling paddings.

    Attributes:
      num_classes: number of output scores.
      conv1: (kernel size, stride, padding) of the first convolution.
      conv2: (kernel size, stride, padding) of the second convolution.
      pool_padding: padding of the three 3x3 stride-2 max-poolings.
      lrn: local response normalization after the first two ReLUs (off by default).
      hidden: width of fc6 and fc7.
      dropout: drop rate before fc7 and fc8 (training only).
    """

    num_classes: int
    conv1: tuple[int, int, int] = (11, 4, 2)
    conv2: tuple[int, int, int] = (5, 1, 2)
    pool_padding: tuple[int, int, int] = (0, 0, 0)
    lrn: bool = False
    hidden: int = 4096
    dropout: float = 0.5

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        def pool(x, i):
            p = self.pool_padding[i]
            return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((p, p), (p, p)))

        for i, (features, (k, s, p)) in enumerate(zip((96, 256), (self.conv1, self.conv2), strict=True)):
            x = nn.relu(nn.Conv(features, (k, k), strides=(s, s), padding=((p, p), (p, p)), name=f"conv{i + 1}")(x))
            if self.lrn:
                x = local_response_norm(x)
            x = pool(x, i)
        for i, features in enumerate((384, 384, 256)):
            x = nn.relu(nn.Conv(features, (3, 3), padding=((1, 1), (1, 1)), name=f"conv{i + 3}")(x))
        x = pool(x, 2)
        x = x.reshape((x.shape[0], -1))
        for name in ("fc6", "fc7"):
            x = nn.relu(nn.Dense(self.hidden, name=name)(x))
            x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.num_classes, name="fc8")(x)


# Zeiler & Fergus (2014) Fig. 3 on 224x224 inputs: 7x7 stride-2 conv1 (224 -> 110), pool (-> 55), 5x5 stride-2
# conv2 (-> 26), pool (-> 13), conv3-5 (13), pool (-> 6). The paddings are the ones that reproduce these sizes.
ZFNet = partial(AlexNet, conv1=(7, 2, 1), conv2=(5, 2, 0), pool_padding=(1, 1, 0))

"""The feature pyramid of Lin et al. 2017 ("Feature Pyramid Networks for Object Detection"), §3 of the paper.

A bottom-up backbone gives maps ``C_l`` of stride ``2 ** l``; the pyramid turns them into maps ``P_l`` of one
width (the paper's ``d = 256``) that all carry the deepest, most semantic features: each ``C_l`` goes through a
1x1 *lateral* convolution, the coarser merged map is upsampled x2 (nearest neighbour, as in the paper) and
*summed* with it, and a 3x3 *output* convolution on each sum reduces the aliasing of the upsampling. The paper
adds no non-linearity in the pyramid; neither does this module.

Departure: the coarsest level's top-down input is its own lateral only (the paper's ``P6`` for the RPN, a
stride-2 subsampling of ``P5``, is not built: on the course's 96x96 scenes ``P5`` is already 3x3). An odd-sized
finer map (``ceil`` of SAME-padded strided convolutions) gets the upsampled map cropped to its size.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax


class FPN(nn.Module):
    """Top-down path with lateral connections: ``C_min..C_max`` (finest first) to ``P_min..P_max``.

    ``__call__(features)`` takes the backbone maps ``[B, H_l, W_l, C_l]`` finest first, each twice the size of
    the next (up to the ``ceil`` of odd sizes), and returns the pyramid maps ``[B, H_l, W_l, features]`` in the
    same order.

    Attributes:
      features: channels of every pyramid level (the paper's ``d``).
    """

    features: int = 256

    @nn.compact
    def __call__(self, maps: Sequence[jax.Array]) -> tuple[jax.Array, ...]:
        merged: list[jax.Array] = []
        top = None
        for i in reversed(range(len(maps))):  # coarsest first: the top-down path
            y = nn.Conv(self.features, (1, 1), name=f"lateral{i}")(maps[i])
            if top is not None:
                b, h, w, c = top.shape
                y = y + jax.image.resize(top, (b, 2 * h, 2 * w, c), "nearest")[:, : y.shape[1], : y.shape[2]]
            top = y
            merged.append(nn.Conv(self.features, (3, 3), name=f"output{i}")(y))
        return tuple(reversed(merged))

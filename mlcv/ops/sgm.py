"""Semi-global matching (Hirschmüller 2008), the smoothing MC-CNN's paper puts after its learned cost.

Along each path direction r the aggregated cost of pixel p and disparity d is

    L_r(p, d) = C(p, d) + min(L_r(p - r, d), L_r(p - r, d +- 1) + P1, min_k L_r(p - r, k) + P2) - min_k L_r(p - r, k)

(a step of one disparity costs P1, any larger jump P2; subtracting the previous minimum keeps L bounded), and the
disparity is the winner-takes-all of the sum over the paths. mlcv runs the four paths along rows and columns
(left to right, right to left, top to bottom, bottom to top) as ``lax.scan`` over the image, vectorised over the
other axis and the disparities. Volumes follow :mod:`mlcv.ops.stereo`'s convention: ``[D, H, W]`` scores, higher
is better, ``-inf`` where a disparity is undefined (``x - d < 0``); the cost is the negated score, and an undefined
entry costs the volume's largest finite cost while it is aggregated, then is undefined again.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _path(cost: jax.Array, p1: float, p2: float, reverse: bool) -> jax.Array:
    """``L_r`` of one direction for costs ``[N, D, M]`` scanned along the first axis (backwards if ``reverse``)."""

    def step(prev: jax.Array, c: jax.Array) -> tuple[jax.Array, jax.Array]:
        low = prev.min(axis=0, keepdims=True)
        inf = jnp.full_like(prev[:1], jnp.inf)
        neighbours = jnp.minimum(jnp.concatenate([inf, prev[:-1]]), jnp.concatenate([prev[1:], inf]))
        cur = c + jnp.minimum(jnp.minimum(prev, neighbours + p1), low + p2) - low
        return cur, cur

    if reverse:
        _, rest = jax.lax.scan(step, cost[-1], cost[:-1], reverse=True)
        return jnp.concatenate([rest, cost[-1:]])
    _, rest = jax.lax.scan(step, cost[0], cost[1:])
    return jnp.concatenate([cost[:1], rest])


@functools.partial(jax.jit, static_argnames=("p1", "p2"))
def semi_global(volume: jax.Array, p1: float, p2: float) -> jax.Array:
    """Scores ``[D, H, W]`` smoothed by four-path semi-global matching: minus the mean of the paths' ``L_r``."""
    if p2 < p1:
        raise ValueError(f"semi-global matching needs P2 >= P1, got P1={p1}, P2={p2}")
    defined = jnp.isfinite(volume)
    cost = -volume
    cost = jnp.where(defined, cost, jnp.max(jnp.where(defined, cost, -jnp.inf)))
    along_x = jnp.moveaxis(cost, 2, 0)  # [W, D, H]
    along_y = jnp.moveaxis(cost, 1, 0)  # [H, D, W]
    total = sum(jnp.moveaxis(_path(along_x, p1, p2, rev), 0, 2) for rev in (False, True))
    total = total + sum(jnp.moveaxis(_path(along_y, p1, p2, rev), 0, 1) for rev in (False, True))
    return jnp.where(defined, -total / 4.0, -jnp.inf)

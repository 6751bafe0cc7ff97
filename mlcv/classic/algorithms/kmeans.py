"""k-means in JAX: greedy k-means++ seeding, Lloyd iterations, restarts keeping the lowest inertia.

The stopping rule follows scikit-learn's Lloyd: stop when an assignment step
changes no label, or when the centres moved by at most ``tol`` times the mean
per-feature variance of the data (summed squared shift), or after
``max_iter`` steps; the final labels are the nearest centres of the final
centres. A cluster that loses all its points keeps its previous centre
(scikit-learn moves it to a far point instead; the two agree whenever no
cluster empties).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class KMeansResult:
    """The best restart: ``centres`` (k, d), ``labels`` (n,), ``inertia`` (sum of squared distances), ``n_iter``."""

    centres: np.ndarray
    labels: np.ndarray
    inertia: float
    n_iter: int


def squared_distances(x: jax.Array, centres: jax.Array) -> jax.Array:
    """``|x_i - c_j|^2`` for every point and centre: (n, k), by the matrix-product expansion, clipped at 0."""
    sq = jnp.sum(x**2, 1)[:, None] - 2 * x @ centres.T + jnp.sum(centres**2, 1)[None, :]
    return jnp.maximum(sq, 0.0)


@jax.jit
def assign(x: jax.Array, centres: jax.Array) -> jax.Array:
    """Index of the nearest centre of each point (the lower index on ties)."""
    # |x|^2 is the same for every centre of a row, so it is left out of the comparison.
    return jnp.argmin(jnp.sum(centres**2, 1)[None, :] - 2 * x @ centres.T, axis=1)


def inertia(x: jax.Array, centres: jax.Array, labels: jax.Array) -> jax.Array:
    """Sum of squared distances of the points to their centres, computed from the differences (no cancellation)."""
    return jnp.sum((x - centres[labels]) ** 2)


@functools.partial(jax.jit, static_argnames=("k", "n_local_trials"))
def kmeans_plusplus(key: jax.Array, x: jax.Array, k: int, n_local_trials: int | None = None) -> jax.Array:
    """k-means++ seeding (Arthur and Vassilvitskii, 2007), greedy variant: (k, d) centres taken from ``x``.

    The first centre is a uniformly drawn point. Each next one is the best of
    ``n_local_trials`` candidates (default ``2 + ln k``, as scikit-learn)
    drawn with probability proportional to the squared distance to the
    nearest centre so far: the candidate that lowers the total most.
    """
    n = x.shape[0]
    trials = n_local_trials or 2 + int(math.log(k))
    first_key, draw_key = jax.random.split(key)
    first = jax.random.randint(first_key, (), 0, n)
    # Every uniform number is drawn up front: the loop body then holds no random-number generator to compile.
    draws = jax.random.uniform(draw_key, (k, trials), x.dtype)
    centres = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(x[first])
    closest = jnp.sum((x - x[first]) ** 2, 1)

    def body(i, state):
        centres, closest = state
        # Inverse-CDF draws: the first point whose cumulative squared distance exceeds u. When every point
        # already sits on a centre (fewer distinct points than k), all weights are 0 and draws are uniform.
        weight = jnp.where(jnp.sum(closest) > 0, closest, 1.0)
        cum = jnp.cumsum(weight)
        cand = jnp.minimum(jnp.sum(cum[None, :] <= draws[i][:, None] * cum[-1], 1), n - 1)
        cand_closest = jnp.minimum(closest[None, :], squared_distances(x, x[cand]).T)
        best = jnp.argmin(jnp.sum(cand_closest, 1))
        return centres.at[i].set(x[cand[best]]), cand_closest[best]

    centres, _ = jax.lax.fori_loop(1, k, body, (centres, closest))
    return centres


@functools.partial(jax.jit, static_argnames=("max_iter",))
def lloyd(x: jax.Array, centres: jax.Array, max_iter: int = 300, tol: float = 1e-4):
    """Lloyd iterations from ``centres``: returns (centres, labels, inertia, n_iter). See the module docstring."""
    k = centres.shape[0]
    tol_abs = tol * jnp.mean(jnp.var(x, axis=0))

    def update(labels, old):
        sums = jax.ops.segment_sum(x, labels, num_segments=k)
        counts = jax.ops.segment_sum(jnp.ones(x.shape[0], x.dtype), labels, num_segments=k)
        return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1)[:, None], old)

    def cond(state):
        i, _, _, shift, same = state
        return (i < max_iter) & ~same & (shift > tol_abs)

    def body(state):
        i, c, prev, _, _ = state
        labels = assign(x, c)
        new = update(labels, c)
        return i + 1, new, labels, jnp.sum((new - c) ** 2), jnp.all(labels == prev)

    init = (0, centres, jnp.full(x.shape[0], -1, jnp.int32), jnp.array(jnp.inf, x.dtype), jnp.array(False))
    n_iter, centres, _, _, _ = jax.lax.while_loop(cond, body, init)
    labels = assign(x, centres)
    return centres, labels, inertia(x, centres, labels), n_iter


def kmeans(
    key: jax.Array,
    x: np.ndarray,
    k: int,
    *,
    n_init: int = 10,
    max_iter: int = 300,
    tol: float = 1e-4,
    init: np.ndarray | None = None,
) -> KMeansResult:
    """Clusters the rows of ``x`` into ``k`` clusters; the restart of lowest inertia wins (the first on ties).

    Args:
      key: PRNG key of the seeding; restart i uses the i-th of ``n_init`` keys split from it.
      x: (n, d) data, computed in float32.
      k: number of clusters, at most n.
      n_init: restarts, each seeded by k-means++.
      max_iter: Lloyd iterations at most per restart.
      tol: relative tolerance on the centre shift (see the module docstring).
      init: (k, d) initial centres; given, there is one run from them and no seeding.
    """
    x = jnp.asarray(x, jnp.float32)
    if not 1 <= k <= x.shape[0]:
        raise ValueError(f"k={k} must be between 1 and the number of points ({x.shape[0]})")
    if init is not None:
        centres, labels, total, n_iter = lloyd(x, jnp.asarray(init, jnp.float32), max_iter, tol)
    else:
        if n_init < 1:
            raise ValueError(f"n_init must be >= 1, got {n_init}")
        best = None
        for restart_key in jax.random.split(key, n_init):  # one compiled seeding and Lloyd serve every restart
            run = lloyd(x, kmeans_plusplus(restart_key, x, k), max_iter, tol)
            if best is None or float(run[2]) < float(best[2]):
                best = run
        centres, labels, total, n_iter = best
    return KMeansResult(np.asarray(centres), np.asarray(labels), float(total), int(n_iter))

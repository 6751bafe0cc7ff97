"""Parameter averaging for evaluation: EMA, Polyak (uniform) and cycle averages.

The averaged copy lives in the train state beside the raw parameters (and
so in every checkpoint); the training loop evaluates both. Batch-norm
statistics are averaged with the same rule as the parameters, so the
averaged network is evaluated with statistics that match its weights'
history.

Rules, with theta the raw parameters after a step and avg the average:

- ``ema``:    avg <- (1 - rho) * theta + rho * avg        every step
- ``polyak``: avg <- (theta + n * avg) / (n + 1)          every step from ``start_step``
- ``cycle``:  avg <- (theta_cycle + n * avg) / (n + 1)    at the end of each learning-rate cycle

Names: what the course calls Polyak averaging (its eq. 40) is the exponential moving average, ``ema`` here
(``ema_decay`` is its beta). ``polyak`` is Polyak and Juditsky's uniform mean of the iterates.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from mlcv.config import ConfigError

KINDS = ("none", "ema", "polyak", "cycle")


def check(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError for an unknown kind or a decay outside [0, 1)."""
    kind = config.get("kind", "none")
    if kind not in KINDS:
        raise ConfigError(f"unknown averaging {kind!r} (config.averaging.kind); valid: {', '.join(KINDS)}")
    if kind == "ema" and not 0.0 <= float(config.ema_decay) < 1.0:
        raise ConfigError(f"config.averaging.ema_decay must be in [0, 1), not {config.ema_decay}")


def init(config: ml_collections.ConfigDict, params: Any, batch_stats: Any) -> dict[str, Any] | None:
    """The initial average: a copy of the initial variables and a count of 0; None when off."""
    if config.get("kind", "none") == "none":
        return None
    copy = jax.tree.map(jnp.array, {"params": params, "batch_stats": batch_stats})
    return {**copy, "count": jnp.zeros((), jnp.int32)}


def _blend(avg: Any, new: Any, weight_new: jax.Array) -> Any:
    return jax.tree.map(lambda a, x: a + weight_new * (x - a), avg, new)


def update(
    config: ml_collections.ConfigDict,
    avg: dict[str, Any] | None,
    params: Any,
    batch_stats: Any,
    step: jax.Array,
    cycle_end: jax.Array | bool = False,
) -> dict[str, Any] | None:
    """The average after the step that produced ``params`` (``step`` counts from 1).

    ``cycle_end`` says whether this step ends a learning-rate cycle; only the
    ``cycle`` kind reads it.
    """
    kind = config.get("kind", "none")
    if avg is None or kind == "none":
        return avg
    new = {"params": params, "batch_stats": batch_stats}
    old = {"params": avg["params"], "batch_stats": avg["batch_stats"]}
    count = avg["count"]
    if kind == "ema":
        rho = jnp.asarray(float(config.ema_decay), jnp.float32)
        if config.get("ema_warmup", False):
            # Early on the average would be dominated by the random init;
            # rho_t = min(rho, (1 + t) / (10 + t)) ramps the memory up.
            t = step.astype(jnp.float32)
            rho = jnp.minimum(rho, (1.0 + t) / (10.0 + t))
        blended = _blend(old, new, 1.0 - rho)
        return {**blended, "count": count + 1}
    take = step >= int(config.get("start_step", 0)) if kind == "polyak" else jnp.asarray(cycle_end)
    # The first averaged step replaces the initial copy: weight 1 / (n + 1) with n = 0.
    weight = jnp.where(take, 1.0 / (count.astype(jnp.float32) + 1.0), 0.0)
    blended = _blend(old, new, weight)
    return {**blended, "count": count + take.astype(jnp.int32)}

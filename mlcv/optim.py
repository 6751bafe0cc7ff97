"""Optax chains built from ``config.optim``.

Keys: ``name`` (sgd, momentum, nesterov, adam), ``lr``, ``momentum``,
``b1``/``b2``/``eps`` for Adam, ``schedule`` (constant, cosine, linear),
``warmup_steps``, ``weight_decay`` (decoupled, not applied to biases and
normalization scales) and ``grad_clip_norm``.
"""

from __future__ import annotations

import jax
import ml_collections
import optax

from mlcv.config import ConfigError

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")
SCHEDULES = ("constant", "cosine", "linear")


def schedule(config: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    """The learning-rate schedule: optional linear warm-up, then ``schedule``."""
    lr = float(config.lr)
    warmup = int(config.get("warmup_steps", 0) or 0)
    decay_steps = max(1, total_steps - warmup)
    name = config.get("schedule", "constant")
    if name == "constant":
        main = optax.constant_schedule(lr)
    elif name == "cosine":
        main = optax.cosine_decay_schedule(lr, decay_steps, alpha=float(config.get("end_lr_factor", 0.0)))
    elif name == "linear":
        main = optax.linear_schedule(lr, lr * float(config.get("end_lr_factor", 0.0)), decay_steps)
    else:
        raise ConfigError(f"unknown schedule {name!r} (config.optim.schedule); valid: {', '.join(SCHEDULES)}")
    if not warmup:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def _decay_mask(params):
    # Biases and normalization scales/offsets are 1-D; decaying them only
    # fights the normalization, so weight decay applies to kernels alone.
    return jax.tree.map(lambda p: p.ndim > 1, params)


def make(config: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
    """Builds the optimizer chain described by ``config`` (``config.optim``).

    The chain is clip -> update direction -> decoupled weight decay -> scale
    by the scheduled learning rate, so weight decay is ``lr * wd * theta`` for
    every optimizer (AdamW's form for Adam).
    """
    name = config.name
    if name == "sgd":
        direction = optax.identity()
    elif name in ("momentum", "nesterov"):
        direction = optax.trace(decay=float(config.get("momentum", 0.9)), nesterov=name == "nesterov")
    elif name == "adam":
        direction = optax.scale_by_adam(
            b1=float(config.get("b1", 0.9)), b2=float(config.get("b2", 0.999)), eps=float(config.get("eps", 1e-8))
        )
    else:
        raise ConfigError(f"unknown optimizer {name!r} (config.optim.name); valid: {', '.join(OPTIMIZERS)}")
    parts = []
    if config.get("grad_clip_norm"):
        parts.append(optax.clip_by_global_norm(float(config.grad_clip_norm)))
    parts.append(direction)
    if config.get("weight_decay"):
        parts.append(optax.add_decayed_weights(float(config.weight_decay), mask=_decay_mask))
    parts.append(optax.scale_by_learning_rate(schedule(config, total_steps)))
    return optax.chain(*parts)

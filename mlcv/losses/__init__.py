"""Losses as pure functions of scores and integer labels, per example.

Each returns one value per example so that callers can mask padding and
average as they need.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from mlcv.config import ConfigError


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """-sum_k q_k log softmax(logits)_k per example, q the (smoothed) one-hot label.

    With smoothing eps the target is (1 - eps) * one_hot + eps / K.
    """
    if not label_smoothing:
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    target = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype), label_smoothing)
    return optax.softmax_cross_entropy(logits, target)


def rmse_one_hot(scores: jax.Array, labels: jax.Array) -> jax.Array:
    """The course's RMSE loss: the L2 norm of scores minus the one-hot label.

    ``sqrt(sum_k (s_k - y_k)^2)`` per example, y the one-hot label vector.
    """
    target = jax.nn.one_hot(labels, scores.shape[-1], dtype=scores.dtype)
    # The gradient of a norm is undefined at 0; the epsilon keeps it finite
    # when a model fits a one-hot target exactly.
    return jnp.sqrt(jnp.sum(jnp.square(scores - target), axis=-1) + 1e-12)


def distillation(
    student_logits: jax.Array, teacher_probs: jax.Array, labels: jax.Array, temperature: float, alpha: float
) -> jax.Array:
    """Hinton et al.'s knowledge-distillation loss, per example.

    ``alpha * T^2 * KL(p_teacher^T || softmax(student / T)) + (1 - alpha) * CE(student, label)``,
    where ``teacher_probs`` are already softened at temperature T. The T^2
    keeps the soft term's gradient on the scale of the hard term's.
    """
    log_q = jax.nn.log_softmax(student_logits / temperature, axis=-1)
    log_p = jnp.log(jnp.clip(teacher_probs, 1e-12, 1.0))
    kl = jnp.sum(teacher_probs * (log_p - log_q), axis=-1)
    hard = softmax_cross_entropy(student_logits, labels)
    return alpha * temperature**2 * kl + (1.0 - alpha) * hard


_LOSSES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "softmax_xent": softmax_cross_entropy,
    "rmse": rmse_one_hot,
}


def get(name: str) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """The classification loss registered as ``name``."""
    if name not in _LOSSES:
        raise ConfigError(f"unknown loss {name!r} (config.loss); valid losses: {', '.join(sorted(_LOSSES))}")
    return _LOSSES[name]

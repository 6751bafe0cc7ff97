"""Optax chains built from ``config.optim``, and Newton's method for small problems.

Every key is read with ``config.get(key, default)``, so older configs keep working:

- ``name``: sgd, momentum, nesterov, adam, adagrad, rmsprop; ``lr``. ``momentum`` (0.9) for momentum/nesterov;
  ``b1`` (0.9), ``b2`` (0.999) for Adam; ``decay`` (0.9) for RMSprop; ``eps`` (1e-8) for adam/adagrad/rmsprop;
  ``initial_accumulator`` (0.0) for AdaGrad.
- ``schedule``: constant, cosine, linear, step, onecycle, cosine_restarts (see :func:`schedule`), with a linear
  warm-up of ``warmup_steps`` (0) in front of any of them.
- ``l2`` (coupled: added to the gradient, as a loss term would), ``l1``, ``weight_decay`` (decoupled), all on the
  leaves picked by ``decay_mask`` ('kernels', the default, or 'all'); ``grad_clip_norm``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.flatten_util import ravel_pytree

from mlcv import config as config_lib
from mlcv.config import ConfigError, Range

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adagrad", "rmsprop", "newton")
SCHEDULES = ("constant", "cosine", "linear", "step", "onecycle", "cosine_restarts")
DECAY_MASKS = ("kernels", "all")
# How the one-cycle policy falls after its peak: the course's straight line (eqs. 38-39) or a half cosine.
ONECYCLE_ANNEALS = ("linear", "cos")
# The optimizers whose momentum (or Adam's b1) the one-cycle policy moves against the learning rate.
WITH_MOMENTUM = ("momentum", "nesterov", "adam")


_RATE = Range(0, 1, high_open=True)  # a decay or momentum coefficient: 1 would never forget
#: The accepted range of every numeric key of ``config.optim`` (a missing or None key is not checked).
RANGES: dict[str, Range] = {
    "lr": config_lib.POSITIVE,
    "momentum": _RATE,
    "b1": _RATE,
    "b2": _RATE,
    "decay": _RATE,
    "eps": config_lib.NON_NEGATIVE,
    "initial_accumulator": config_lib.NON_NEGATIVE,
    "newton_damping": config_lib.NON_NEGATIVE,
    "warmup_steps": config_lib.NON_NEGATIVE_INT,
    "end_lr_factor": config_lib.NON_NEGATIVE,
    "step_factor": config_lib.POSITIVE,
    "onecycle_pct": Range(0, 1),
    "div_factor": config_lib.POSITIVE,
    "final_div": config_lib.POSITIVE,
    "momentum_max": _RATE,
    "momentum_min": _RATE,
    "cycles": config_lib.POSITIVE_INT,
    "plateau_factor": _RATE,  # 0 turns plateau scaling off; 1 or more would never lower the lr
    "plateau_patience_evals": config_lib.POSITIVE_INT,
    "plateau_min_delta": config_lib.NON_NEGATIVE,
    "weight_decay": config_lib.NON_NEGATIVE,
    "l2": config_lib.NON_NEGATIVE,
    "l1": config_lib.NON_NEGATIVE,
    "grad_clip_norm": config_lib.NON_NEGATIVE,
}


def check(config: ml_collections.ConfigDict) -> None:
    """Checks the names and every numeric value of ``config`` (``config.optim``) before anything is built.

    Raises:
      ConfigError: names the key, its value and the accepted range (``config.optim.lr=nan: must be a
        finite number > 0``) or the valid names.
    """
    for key, accepted in RANGES.items():
        config_lib.check(config, key, accepted, where="config.optim")
    for key, accepted in (
        ("milestones_steps", config_lib.NON_NEGATIVE_INT),
        ("milestones_epochs", config_lib.NON_NEGATIVE),
    ):
        value = config.get(key) or ()
        for m in value if isinstance(value, (list, tuple)) else [value]:
            if not accepted.accepts(m):
                raise ConfigError(f"config.optim.{key}={value!r}: each must be {accepted}")
    choices = (
        ("name", OPTIMIZERS, "optimizer"),
        ("schedule", SCHEDULES, "schedule"),
        ("decay_mask", DECAY_MASKS, "decay_mask"),
        ("onecycle_anneal", ONECYCLE_ANNEALS, "onecycle_anneal"),
    )
    for key, valid, what in choices:
        if key in config and config[key] is not None and config[key] not in valid:
            raise ConfigError(f"unknown {what} {config[key]!r} (config.optim.{key}); valid: {', '.join(valid)}")


def _warmup(config: ml_collections.ConfigDict) -> int:
    return int(config.get("warmup_steps", 0) or 0)


def _cosine(start: float, end: float, steps: int) -> optax.Schedule:
    """``end + (start - end) * (1 + cos(pi * t / steps)) / 2``, held at ``end`` after ``steps``; either direction."""
    unit = optax.cosine_decay_schedule(1.0, max(1, steps))
    return lambda t: end + (start - end) * unit(t)


def _one_cycle(start: float, peak: float, end: float, steps: int, pct: float, anneal: str) -> optax.Schedule:
    """Linear from ``start`` to ``peak`` over ``round(pct * steps)`` steps, then to ``end``: a line or half a cosine."""
    # round, not int: 0.29 * 100 is 28.999999999999996 in floating point.
    up = min(steps, max(0, round(pct * steps)))
    fall = optax.linear_schedule(peak, end, steps - up) if anneal == "linear" else _cosine(peak, end, steps - up)
    return optax.join_schedules([optax.linear_schedule(start, peak, up), fall], [up])


def _anneal(config: ml_collections.ConfigDict) -> str:
    return config.get("onecycle_anneal", "linear")


def _milestones(config: ml_collections.ConfigDict, steps_per_epoch: int | None) -> list[int]:
    """``milestones_steps``, or ``milestones_epochs`` converted with ``steps_per_epoch``; steps win when both set."""
    by_steps, by_epochs = config.get("milestones_steps"), config.get("milestones_epochs")
    if by_steps:
        return sorted(int(m) for m in (by_steps if isinstance(by_steps, (list, tuple)) else [by_steps]))
    if by_epochs:
        if not steps_per_epoch:
            raise ConfigError(
                "config.optim.milestones_epochs needs steps_per_epoch (pass it to optim.schedule / optim.make) "
                "or set config.optim.milestones_steps"
            )
        epochs = by_epochs if isinstance(by_epochs, (list, tuple)) else [by_epochs]
        # Same rounding as mlcv.config.steps: 1.1 epochs of 100 steps is step 110.
        return sorted(max(1, math.ceil(round(float(e) * steps_per_epoch, 6))) for e in epochs)
    raise ConfigError("schedule 'step' needs config.optim.milestones_steps (or config.optim.milestones_epochs)")


def _cycle_bounds(config: ml_collections.ConfigDict, total_steps: int) -> list[int]:
    """Absolute first steps of the cosine cycles, then ``total_steps``: the step after warm-up split evenly."""
    warmup = _warmup(config)
    n = max(1, total_steps - warmup)
    cycles = int(config.get("cycles", 1)) if config.get("schedule", "constant") == "cosine_restarts" else 1
    if not 1 <= cycles <= n:
        raise ConfigError(f"config.optim.cycles={cycles} must be between 1 and the {n} steps after warm-up")
    # Integer division spreads a remainder over the cycles (lengths differ by at most one step).
    return [warmup + k * n // cycles for k in range(cycles + 1)]


def cycle_ends(config: ml_collections.ConfigDict, total_steps: int) -> list[int]:
    """The last step of each cosine cycle, counted as the training loop counts (step s = s updates done).

    A snapshot ensemble saves the parameters when the loop's step is in this list. The last entry is
    ``total_steps``; a schedule other than cosine_restarts is one cycle.
    """
    return _cycle_bounds(config, total_steps)[1:]


def schedule(config: ml_collections.ConfigDict, total_steps: int, steps_per_epoch: int | None = None) -> optax.Schedule:
    """The learning rate at (0-based) step t: a linear warm-up ``lr * t / W`` for t < W, then ``schedule``.

    With n = T - W steps after warm-up, s = t - W, a = ``end_lr_factor`` (default 0):

    - constant: lr. linear: lr + (a lr - lr) s / n.
    - cosine: the course's lr_s = lr_E + (lr_0 - lr_E) (1 + cos(pi s / n)) / 2 with lr_E = a lr, then lr_E.
    - step: lr / ``step_factor`` ** (number of milestones <= t). Milestones are absolute steps (warm-up included),
      as papers state them: ``milestones_steps``, or ``milestones_epochs`` times ``steps_per_epoch``.
    - onecycle, ``onecycle_anneal`` 'linear' (the default): the course's eqs. 38-39. With p = ``onecycle_pct``,
      u = round(p n), lr_0 = lr / ``div_factor``, lr_max = lr, lr_E = lr / ``final_div``:
      lr_s = lr_0 + (lr_max - lr_0) s / u for s < u, then lr_max - (lr_max - lr_E) (s - u) / (n - u), both
      straight lines. The course's eq. 38 writes lr_0 where the falling line starts; it must start at lr_max to
      be continuous at s = u = pI, and it does here. ``onecycle_anneal`` 'cos' keeps the rise and falls along half
      a cosine instead, lr_E + (lr_max - lr_E) (1 + cos(pi (s - u) / (n - u))) / 2, as fast.ai's variant (at 85 % of
      a run rising for 30 %, 0.095 of the peak against the line's 0.214). (torch's OneCycleLR and
      optax.cosine_onecycle_schedule divide the *initial* lr by final_div_factor and rise along a cosine too.)
    - cosine_restarts: ``cycles`` cosine decays from lr to a lr over equal parts of n (:func:`cycle_ends`).
    """
    lr = float(config.lr)
    warmup = _warmup(config)
    n = max(1, total_steps - warmup)
    a = float(config.get("end_lr_factor", 0.0))
    name = config.get("schedule", "constant")
    if name == "constant":
        main = optax.constant_schedule(lr)
    elif name == "cosine":
        main = optax.cosine_decay_schedule(lr, n, alpha=a)
    elif name == "linear":
        main = optax.linear_schedule(lr, lr * a, n)
    elif name == "step":
        factor = float(config.get("step_factor", 10.0))
        # The joined schedule sees steps since the end of warm-up; milestones count from the start of training.
        drops: dict[int, float] = {}
        for m in _milestones(config, steps_per_epoch):
            drops[m - warmup] = drops.get(m - warmup, 1.0) / factor  # a repeated milestone divides twice
        main = optax.piecewise_constant_schedule(lr, drops)
    elif name == "onecycle":
        lo, end = lr / float(config.get("div_factor", 25.0)), lr / float(config.get("final_div", 1e4))
        main = _one_cycle(lo, lr, end, n, float(config.get("onecycle_pct", 0.3)), _anneal(config))
    elif name == "cosine_restarts":
        bounds = _cycle_bounds(config, total_steps)
        parts = [optax.cosine_decay_schedule(lr, e - b, alpha=a) for b, e in zip(bounds[:-1], bounds[1:], strict=True)]
        main = optax.join_schedules(parts, [b - warmup for b in bounds[1:-1]])
    else:
        raise ConfigError(f"unknown schedule {name!r} (config.optim.schedule); valid: {', '.join(SCHEDULES)}")
    if not warmup:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def _momentum(config: ml_collections.ConfigDict) -> float:
    if config.name == "adam":
        return float(config.get("b1", 0.9))
    return float(config.get("momentum", 0.9)) if config.name in WITH_MOMENTUM else 0.0


def momentum_schedule(config: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    """The momentum (Adam's b1) at step t, for logging; 0 for optimizers without momentum.

    Constant ``momentum`` / ``b1`` except with the onecycle schedule, where it moves against the learning rate
    (the course's eq. 39): ``momentum_max`` (0.95) during warm-up, linear down to ``momentum_min`` (0.85) while
    the lr rises, then back up to ``momentum_max`` along the lr's fall (a line, or the half cosine with
    ``onecycle_anneal`` 'cos').
    """
    if config.name not in WITH_MOMENTUM or config.get("schedule", "constant") != "onecycle":
        return optax.constant_schedule(_momentum(config))
    hi, lo = float(config.get("momentum_max", 0.95)), float(config.get("momentum_min", 0.85))
    warmup = _warmup(config)
    main = _one_cycle(hi, lo, hi, max(1, total_steps - warmup), float(config.get("onecycle_pct", 0.3)), _anneal(config))
    return optax.join_schedules([optax.constant_schedule(hi), main], [warmup]) if warmup else main


def _decay_mask(config: ml_collections.ConfigDict) -> Callable[[Any], Any]:
    which = config.get("decay_mask", "kernels")
    if which == "kernels":
        # Biases and normalization scales/offsets are 1-D; decaying them only
        # fights the normalization, so regularization applies to kernels alone.
        return lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
    if which == "all":
        return lambda params: jax.tree.map(lambda _: True, params)
    raise ConfigError(f"unknown decay_mask {which!r} (config.optim.decay_mask); valid: {', '.join(DECAY_MASKS)}")


def make(
    config: ml_collections.ConfigDict, total_steps: int, steps_per_epoch: int | None = None
) -> optax.GradientTransformation:
    """Builds the optimizer chain described by ``config`` (``config.optim``).

    The chain is l2 -> l1 -> clip -> update direction -> decoupled weight decay -> scale by the scheduled
    learning rate. l2 adds ``l2 * theta`` (the gradient of ``l2 / 2 * ||theta||^2``) and l1 adds
    ``l1 * sign(theta)`` before the clip, so both are exactly a loss term for every optimizer; weight decay
    is ``lr * wd * theta`` after the direction (AdamW's form for Adam).
    """
    name = config.name
    eps = float(config.get("eps", 1e-8))
    onecycle = name in WITH_MOMENTUM and config.get("schedule", "constant") == "onecycle"
    # Only a one-cycle run wraps the direction in inject_hyperparams, so other runs keep optax's plain state
    # tree and their checkpoints still restore.
    beta = momentum_schedule(config, total_steps) if onecycle else _momentum(config)
    inject = optax.inject_hyperparams if onecycle else (lambda factory: factory)
    if name == "sgd":
        direction = optax.identity()
    elif name in ("momentum", "nesterov"):
        direction = inject(optax.trace)(decay=beta, nesterov=name == "nesterov")
    elif name == "adam":
        direction = inject(optax.scale_by_adam)(b1=beta, b2=float(config.get("b2", 0.999)), eps=eps)
    elif name == "adagrad":
        # optax.adagrad starts its accumulator at 0.1; the course (and torch) start at 0.
        direction = optax.scale_by_rss(initial_accumulator_value=float(config.get("initial_accumulator", 0.0)), eps=eps)
    elif name == "newton":
        direction = scale_by_newton(float(config.get("newton_damping", 0.1)))
    elif name == "rmsprop":
        # eps outside the square root, as in the course (and torch); optax.rmsprop's default puts it inside.
        direction = optax.scale_by_rms(decay=float(config.get("decay", 0.9)), eps=eps, eps_in_sqrt=False)
    else:
        raise ConfigError(f"unknown optimizer {name!r} (config.optim.name); valid: {', '.join(OPTIMIZERS)}")
    mask = _decay_mask(config)
    parts = []
    if config.get("l2"):
        parts.append(optax.add_decayed_weights(float(config.l2), mask=mask))
    if config.get("l1"):
        l1 = float(config.l1)
        parts.append(optax.masked(optax.stateless_with_tree_map(lambda g, p: g + l1 * jnp.sign(p)), mask))
    if config.get("grad_clip_norm"):
        parts.append(optax.clip_by_global_norm(float(config.grad_clip_norm)))
    parts.append(direction)
    if config.get("weight_decay"):
        parts.append(optax.add_decayed_weights(float(config.weight_decay), mask=mask))
    parts.append(optax.scale_by_learning_rate(schedule(config, total_steps, steps_per_epoch)))
    if config.get("plateau_factor"):
        parts.append(scale_by_plateau())
    return optax.chain(*parts)


class PlateauState(NamedTuple):
    """The factor that validation plateaus have multiplied the learning rate by so far."""

    plateau_scale: jax.Array


def scale_by_plateau() -> optax.GradientTransformation:
    """Multiplies updates by ``plateau_scale``, which the training loop lowers on a validation plateau.

    The factor lives in the optimizer state, so it is checkpointed and a resumed run keeps it; the loop
    decides when to lower it (:func:`set_plateau_scale`) because only the loop sees validation metrics.
    """

    def init(params: Any) -> PlateauState:
        del params
        return PlateauState(plateau_scale=jnp.ones((), jnp.float32))

    def update(updates: Any, state: PlateauState, params: Any = None) -> tuple[Any, PlateauState]:
        del params
        return jax.tree.map(lambda u: u * state.plateau_scale, updates), state

    return optax.GradientTransformation(init, update)


def plateau_scale(opt_state: Any) -> float:
    """The current plateau factor of an optimizer state (1.0 without plateau scaling)."""
    value = optax.tree_utils.tree_get(opt_state, "plateau_scale", default=None)
    return 1.0 if value is None else float(value)


def set_plateau_scale(opt_state: Any, scale: float) -> Any:
    """A copy of ``opt_state`` with the plateau factor set to ``scale``."""
    return optax.tree_utils.tree_set(opt_state, plateau_scale=jnp.asarray(scale, jnp.float32))


def scale_by_newton(damping: float = 0.0) -> optax.GradientTransformationExtraArgs:
    """Replaces the gradient g by the Newton direction (H + damping I)^-1 g of the loss ``value_fn``.

    ``update`` needs ``params`` and the keyword ``value_fn`` (the loss as a function of the parameters);
    the training task passes it. The full n x n Hessian makes this for small models only. The damping
    (Levenberg-Marquardt) keeps the solve defined where H is singular, as for softmax cross-entropy,
    whose loss is unchanged by adding one constant to every logit.
    """

    def init(params: Any) -> optax.EmptyState:
        del params
        return optax.EmptyState()

    def update(updates: Any, state: optax.EmptyState, params: Any = None, *, value_fn=None, **extra: Any):
        del extra
        if params is None or value_fn is None:
            raise ValueError("scale_by_newton needs params and value_fn (the loss as a function of params)")
        flat, unravel = ravel_pytree(params)
        grad, _ = ravel_pytree(updates)
        hessian = jax.hessian(lambda x: value_fn(unravel(x)))(flat)
        hessian = hessian + damping * jnp.eye(flat.size, dtype=hessian.dtype)
        return unravel(jnp.linalg.solve(hessian, grad)), state

    return optax.GradientTransformationExtraArgs(init, update)


def newton_step(loss_fn: Callable[[Any], jax.Array], params: Any, lr: float = 1.0) -> Any:
    """One Newton step ``theta - lr * H^-1 g`` on the flattened parameter pytree.

    It builds the full n x n Hessian of the n parameters (n^2 memory, an n^3 solve), so it is for small
    models only. Where the Hessian is not positive definite the step heads for the saddle or maximum.
    """
    flat, unravel = ravel_pytree(params)

    def flat_loss(x):
        return loss_fn(unravel(x))

    direction = jnp.linalg.solve(jax.hessian(flat_loss)(flat), jax.grad(flat_loss)(flat))
    return unravel(flat - lr * direction)

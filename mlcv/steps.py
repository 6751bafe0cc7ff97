"""How the training loop compiles a task's train step: one executable, or forward and backward apart."""

from __future__ import annotations

from typing import Any

import jax
import ml_collections

from mlcv import sharding
from mlcv.config import ConfigError


def split_step(config: ml_collections.ConfigDict, task: Any) -> bool:
    """Whether the train step runs as two executables, forward then backward (``config.split_train_step``)."""
    choice = config.get("split_train_step", "auto")
    if choice not in ("auto", "always", "never"):
        raise ConfigError(f"config.split_train_step must be 'auto', 'always' or 'never', not {choice!r}")
    can = getattr(task, "can_split_step", False)
    if choice == "always" and not can:
        raise ConfigError("config.split_train_step='always': this task's step cannot be split (Newton's method)")
    # Only XLA's CPU backend is known to gain; elsewhere one executable keeps every fusion.
    return can and (choice == "always" or (choice == "auto" and jax.default_backend() == "cpu"))


def compile_train_step(task: Any, state: Any, batch: dict[str, jax.Array], mesh: Any, *, split: bool):
    """The task's train step compiled ahead of time for ``state`` and ``batch``: ``step(state, batch)``.

    The state is donated. With ``split`` it runs as two executables, the task's ``forward`` then its
    ``backward`` (see ClassificationTask.forward for why XLA's CPU backend gains from that); the
    numbers are the same either way.
    """
    repl, data_sh = sharding.replicated(mesh), sharding.batch_sharded(mesh)
    if not split:
        return (
            jax.jit(task.train_step, in_shardings=(repl, data_sh), out_shardings=(repl, repl), donate_argnums=0)
            .lower(state, batch)
            .compile()
        )
    fwd = jax.jit(task.forward, in_shardings=(repl, data_sh)).lower(state, batch).compile()
    # out_info: the forward's outputs (the VJP and its saved activations) with the shardings it gives them.
    bwd = (
        jax.jit(task.backward, out_shardings=(repl, repl), donate_argnums=0)
        .lower(state, batch, *fwd.out_info)
        .compile()
    )
    return lambda state, batch: bwd(state, batch, *fwd(state, batch))

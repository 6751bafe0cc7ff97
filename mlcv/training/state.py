"""The train state: everything a train step reads and writes, checkpointed as one pytree."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax
from flax import struct


class TrainState(struct.PyTreeNode):
    """Everything a train step reads and writes; all leaves are arrays.

    ``rng`` is a raw ``uint32[2]`` key so that it checkpoints like any array;
    the key of step t is ``fold_in(rng, t)``, which makes a resumed run draw
    the same numbers as an uninterrupted one.
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    rng: jax.Array
    apply_fn: Callable = struct.field(pytree_node=False)
    tx: optax.GradientTransformation = struct.field(pytree_node=False)
    # Averaged parameters and batch statistics (mlcv.averaging), or None.
    avg: Any = None
    # Variables a step reads but never updates (a distillation teacher), or None.
    frozen: Any = None

    def averaged(self) -> TrainState:
        """This state with the averaged parameters and statistics in place of the raw ones."""
        if self.avg is None:
            raise ValueError("no parameter averaging in this run (config.averaging.kind is 'none')")
        return self.replace(params=self.avg["params"], batch_stats=self.avg["batch_stats"])

    def apply_gradients(self, grads: Any, extra_args: dict[str, Any] | None = None, **changes: Any) -> TrainState:
        """One optimizer update; ``extra_args`` go to the optimizer (Newton's ``value_fn``); ``changes``
        replaces other fields."""
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params, **(extra_args or {}))
        params = optax.apply_updates(self.params, updates)
        return self.replace(step=self.step + 1, params=params, opt_state=opt_state, **changes)

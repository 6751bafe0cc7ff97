"""The train and eval steps built around any task, and how they are compiled.

:class:`StepBuilder` wraps a :class:`~mlcv.tasks.base.Task` with the generic
machinery: mixed precision (float32 masters cast to ``config.dtype`` at use),
parameter averaging (:mod:`mlcv.averaging`), Newton's method (the optimizer
differentiates the loss twice), dropout keys derived from the step, and on
CPU the forward/backward split. Gradient clipping and weight decay are in the
optax chain (:mod:`mlcv.optim`). A task contributes only its forward pass,
losses and predictions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from mlcv import averaging
from mlcv.config import ConfigError
from mlcv.tasks.base import StepContext, Task
from mlcv.training import sharding, transfer
from mlcv.training.state import TrainState

# A 10,000-parameter Hessian is 400 MB in float32.
_NEWTON_MAX_PARAMS = 10_000


#: "auto" splits a CPU train step of at least this many FLOPs (XLA's count). Below it the split's fixed cost
#: (a second dispatch, the saved activations materialised) outweighs its gain: the digits CNN's 0.45 and 1.8
#: GFLOP steps ran 1.26x and 1.15x slower split; ResNet-18's 372 GFLOP one 1.24x faster (benchmarks/README.md).
SPLIT_MIN_FLOPS = 5e9


def split_step(config: ml_collections.ConfigDict, builder: StepBuilder) -> str:
    """How the train step compiles (``config.split_train_step``): "never" (one executable), "always" (two:
    forward then backward) or "auto" (two on XLA's CPU backend for steps of :data:`SPLIT_MIN_FLOPS` or more;
    :func:`compile_train_step` counts them). A step that cannot be split (Newton's method) is "never"."""
    choice = config.get("split_train_step", "auto")
    if choice not in ("auto", "always", "never"):
        raise ConfigError(f"config.split_train_step must be 'auto', 'always' or 'never', not {choice!r}")
    can = builder.can_split
    if choice == "always" and not can:
        raise ConfigError("config.split_train_step='always': this task's step cannot be split (Newton's method)")
    # Only XLA's CPU backend is known to gain; elsewhere one executable keeps every fusion.
    if not can or (choice == "auto" and jax.default_backend() != "cpu"):
        return "never"
    return choice


class StepBuilder:
    """Train and eval steps of ``task`` under the run's precision, averaging and optimizer.

    Args:
      config: the run's config (``dtype``, ``averaging``, ``optim.name``).
      task: the task whose losses and predictions the steps compute.
      cycle_ends: steps that end a learning-rate cycle (for cycle averaging).
    """

    def __init__(self, config: ml_collections.ConfigDict, task: Task, cycle_ends: Sequence[int] = ()):
        self.task = task
        self.averaging = config.get("averaging") or ml_collections.ConfigDict({"kind": "none"})
        averaging.check(self.averaging)
        self.newton = config.optim.name == "newton"
        dtype = config.get("dtype", "float32")
        if dtype not in ("float32", "bfloat16"):
            raise ConfigError(f"config.dtype must be 'float32' or 'bfloat16', not {dtype!r}")
        self.dtype = jnp.dtype(dtype)
        self.cycle_ends = tuple(int(s) for s in cycle_ends)

    @property
    def can_split(self) -> bool:
        """Whether :meth:`forward` then :meth:`backward` may stand for :meth:`train_step` (not for Newton)."""
        return not self.newton

    def init(
        self, rng: jax.Array, batch: Mapping[str, Any], tx: optax.GradientTransformation, init_from: Any = None
    ) -> TrainState:
        """The initial train state, parameters shaped by ``batch``; ``init_from`` a :class:`transfer.InitSource`.

        With ``init_from``, :attr:`transfer_line` says what was copied from it.
        """
        init_rng, state_rng = jax.random.split(rng)
        variables = self.task.init_variables(init_rng, batch)
        if init_from is not None:
            source = {"params": init_from.variables["params"], "batch_stats": init_from.variables.get("batch_stats")}
            target = {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
            merged, copied, kept = transfer.merge(target, source, init_from.into)
            variables = {**variables, **merged}
            self.transfer_line = transfer.describe(init_from, copied, kept)
        params = variables["params"]
        n_params = sum(x.size for x in jax.tree.leaves(params))
        if self.newton and n_params > _NEWTON_MAX_PARAMS:
            raise ConfigError(
                f"config.optim.name='newton' builds the full Hessian: {n_params:,} parameters need "
                f"{4 * n_params**2 / 2**30:.1f} GiB; it is for models under {_NEWTON_MAX_PARAMS:,} parameters"
            )
        batch_stats = variables.get("batch_stats", {})
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            batch_stats=batch_stats,
            opt_state=tx.init(params),
            rng=state_rng,
            apply_fn=self.task.model.apply,
            tx=tx,
            avg=averaging.init(self.averaging, params, batch_stats),
            frozen=self.task.frozen_variables(),
        )

    def _variables(self, params: Any, batch_stats: Any) -> dict[str, Any]:
        """The variables a forward pass computes with: float32 masters cast to ``config.dtype``.

        Casting at use keeps parameters, batch statistics and optimizer state in float32 while the
        convolutions and matrix products run in bfloat16; gradients flow back through the cast in float32.
        """
        variables = {"params": params, "batch_stats": batch_stats}
        if self.dtype == jnp.float32:
            return variables
        return jax.tree.map(lambda v: v.astype(self.dtype) if jnp.issubdtype(v.dtype, jnp.floating) else v, variables)

    def _inputs(self, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """``batch`` with the model's floating-point inputs cast to ``config.dtype``."""
        return {**batch, **{k: batch[k].astype(self.dtype) for k in self.task.input_keys}}

    def _loss_of(self, state: TrainState, batch: Mapping[str, jax.Array]):
        """The training loss as a function of the parameters, with (metrics, new batch statistics) as aux."""
        dropout_rng = jax.random.fold_in(state.rng, state.step)
        context = StepContext(step=state.step, frozen=state.frozen)
        inputs = self._inputs(batch)

        def loss_of(params):
            outputs, updates = self.task.apply(
                self._variables(params, state.batch_stats),
                inputs,
                train=True,
                rngs={"dropout": dropout_rng},
                mutable=["batch_stats"],
            )
            outputs = jax.tree.map(lambda o: o.astype(jnp.float32), outputs)
            updates = jax.tree.map(lambda u: u.astype(jnp.float32), updates)
            terms = self.task.losses(outputs, batch, context)
            loss = terms[next(iter(terms))] if len(terms) == 1 else sum(terms.values())
            metrics = {**(terms if len(terms) > 1 else {}), **self.task.train_metrics(outputs, batch)}
            return loss, (metrics, updates)

        return loss_of

    def train_step(self, state: TrainState, batch: Mapping[str, jax.Array]) -> tuple[TrainState, dict[str, jax.Array]]:
        """One gradient step; returns the new state and the batch's loss and train metrics."""
        loss_of = self._loss_of(state, batch)
        (loss, (metrics, updates)), grads = jax.value_and_grad(loss_of, has_aux=True)(state.params)
        # Newton's method needs the loss itself, to differentiate it twice.
        extra = {"value_fn": lambda p: loss_of(p)[0]} if self.newton else None
        return self._update(state, grads, extra, loss, metrics, updates)

    def forward(self, state: TrainState, batch: Mapping[str, jax.Array]) -> tuple[Any, tuple[Any, ...]]:
        """The first half of :meth:`train_step`: the loss's VJP (holding the saved activations) and its aux.

        Jitted apart from :meth:`backward`, the saved activations reach the backward pass as materialised
        inputs: XLA's CPU backend then cannot fold the forward elementwise work into the layout
        transposes of the weight gradients, which it emits as slow untiled loops
        (``benchmarks/transpose_fusion.py``).
        """
        loss, vjp, (metrics, updates) = jax.vjp(self._loss_of(state, batch), state.params, has_aux=True)
        return vjp, (loss, metrics, updates)

    def backward(
        self, state: TrainState, batch: Mapping[str, jax.Array], vjp: Any, aux: tuple[Any, ...]
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        """The second half of :meth:`train_step`: gradients from ``vjp``, then the update."""
        del batch  # the forward half read it
        loss, metrics, updates = aux
        (grads,) = vjp(jnp.ones_like(loss))
        return self._update(state, grads, None, loss, metrics, updates)

    def _update(self, state, grads, extra, loss, metrics, updates) -> tuple[TrainState, dict[str, jax.Array]]:
        state = state.apply_gradients(grads, extra, batch_stats=updates.get("batch_stats", state.batch_stats))
        if state.avg is not None:
            cycle_end = jnp.isin(state.step, jnp.asarray(self.cycle_ends, jnp.int32)) if self.cycle_ends else False
            state = state.replace(
                avg=averaging.update(self.averaging, state.avg, state.params, state.batch_stats, state.step, cycle_end)
            )
        # The gradient's global norm before any clipping: what a loss spike or a grad_clip_norm is judged by.
        return state, {"loss": loss, "grad_norm": optax.global_norm(grads), **metrics}

    def predict(self, variables: Mapping[str, Any], batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """The task's evaluation predictions with ``variables`` (float32 outputs)."""
        cast = self._variables(variables["params"], variables.get("batch_stats", {}))
        outputs = self.task.apply(cast, self._inputs(batch), train=False)
        outputs = jax.tree.map(lambda o: o.astype(jnp.float32), outputs)
        return self.task.predict(outputs, batch)

    def eval_step(self, evaluators: Mapping[str, Any]):
        """``step(state, batch) -> {name: evaluator.batch_fn(...)}``: the per-batch device work of evaluation."""

        def step(state: TrainState, batch: Mapping[str, jax.Array]) -> dict[str, Any]:
            preds = self.predict({"params": state.params, "batch_stats": state.batch_stats}, batch)
            return {name: ev.batch_fn(preds, batch) for name, ev in evaluators.items()}

        return step


def compile_train_step(
    builder: StepBuilder, state: TrainState, batch: dict[str, jax.Array], mesh: Any, *, split: str | bool
) -> Any:
    """The train step compiled ahead of time for ``state`` and ``batch``: ``step(state, batch)``.

    The state is donated. Split (``split`` "always" or True, or "auto" for a step of :data:`SPLIT_MIN_FLOPS` or
    more), it runs as two executables, the builder's ``forward`` then its ``backward`` (see
    :meth:`StepBuilder.forward` for why XLA's CPU backend gains from that); the numbers are the same either way.
    """
    repl, data_sh = sharding.replicated(mesh), sharding.batch_sharded(mesh)
    if split in ("auto", "never", False):
        one = jax.jit(builder.train_step, in_shardings=(repl, data_sh), out_shardings=(repl, repl), donate_argnums=0)
        lowered = one.lower(state, batch)
        if split != "auto" or _flops(lowered) < SPLIT_MIN_FLOPS:
            return lowered.compile()
    fwd = jax.jit(builder.forward, in_shardings=(repl, data_sh)).lower(state, batch).compile()
    # out_info: the forward's outputs (the VJP and its saved activations) with the shardings it gives them.
    bwd = (
        jax.jit(builder.backward, out_shardings=(repl, repl), donate_argnums=0)
        .lower(state, batch, *fwd.out_info)
        .compile()
    )
    return lambda state, batch: bwd(state, batch, *fwd(state, batch))


def _flops(lowered: Any) -> float:
    """XLA's FLOP count of a lowered computation; infinity where it gives none (a step then stays split)."""
    cost = lowered.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) and cost else cost
    return float((cost or {}).get("flops", float("inf")))

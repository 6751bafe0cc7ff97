"""Image classification: softmax cross-entropy or RMSE-to-one-hot on logits."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from mlcv import averaging, losses, metrics
from mlcv.config import ConfigError
from mlcv.tasks.base import TrainState

# A 10,000-parameter Hessian is 400 MB in float32.
_NEWTON_MAX_PARAMS = 10_000


class ClassificationTask:
    """Trains a classifier on batches ``{'image', 'label'}``.

    Evaluation batches also carry ``mask`` (0 marks padding); every eval
    metric is derived from the confusion matrix summed over the split.
    """

    batch_keys = ("image", "label")

    def __init__(self, config: ml_collections.ConfigDict, model: nn.Module, num_classes: int):
        self.model = model
        self.num_classes = num_classes
        # Evaluation reports the plain loss, so runs with and without label
        # smoothing compare on the same scale.
        self.loss_fn = losses.get(config.loss)
        smoothing = float(config.get("label_smoothing", 0.0))
        if smoothing and config.loss != "softmax_xent":
            raise ConfigError("config.label_smoothing applies to config.loss='softmax_xent' only")
        self.train_loss_fn = (
            functools.partial(losses.softmax_cross_entropy, label_smoothing=smoothing) if smoothing else self.loss_fn
        )
        self.averaging = config.get("averaging") or ml_collections.ConfigDict({"kind": "none"})
        averaging.check(self.averaging)
        self.newton = config.optim.name == "newton"
        dtype = config.get("dtype", "float32")
        if dtype not in ("float32", "bfloat16"):
            raise ConfigError(f"config.dtype must be 'float32' or 'bfloat16', not {dtype!r}")
        self.dtype = jnp.dtype(dtype)
        # Steps that end a learning-rate cycle (for cycle averaging); set by the loop.
        self.cycle_ends: tuple[int, ...] = ()

    def init(self, rng: jax.Array, batch: dict[str, Any], tx: optax.GradientTransformation) -> TrainState:
        """Initialises parameters from the shapes of ``batch``."""
        init_rng, state_rng = jax.random.split(rng)
        variables = self.model.init(
            {"params": init_rng, "dropout": init_rng}, jnp.asarray(batch["image"][:1]), train=False
        )
        params = variables["params"]
        n_params = sum(x.size for x in jax.tree.leaves(params))
        if self.newton and n_params > _NEWTON_MAX_PARAMS:
            raise ConfigError(
                f"config.optim.name='newton' builds the full Hessian: {n_params:,} parameters need "
                f"{4 * n_params**2 / 2**30:.1f} GiB; it is for models under {_NEWTON_MAX_PARAMS:,} parameters"
            )
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            batch_stats=variables.get("batch_stats", {}),
            opt_state=tx.init(params),
            rng=state_rng,
            apply_fn=self.model.apply,
            tx=tx,
            avg=averaging.init(self.averaging, params, variables.get("batch_stats", {})),
        )

    def _loss_of(self, state: TrainState, batch: dict[str, jax.Array]):
        """The training loss as a function of the parameters, with (logits, new batch statistics) as aux."""
        dropout_rng = jax.random.fold_in(state.rng, state.step)

        def loss_of(params):
            logits, updates = state.apply_fn(
                self._compute_variables(params, state.batch_stats),
                batch["image"].astype(self.dtype),
                train=True,
                rngs={"dropout": dropout_rng},
                mutable=["batch_stats"],
            )
            logits = logits.astype(jnp.float32)
            updates = jax.tree.map(lambda u: u.astype(jnp.float32), updates)
            return self.batch_loss(state, logits, batch).mean(), (logits, updates)

        return loss_of

    def train_step(self, state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, dict[str, jax.Array]]:
        """One gradient step; returns the new state and the batch's loss and accuracy."""
        loss_of = self._loss_of(state, batch)
        (loss, (logits, updates)), grads = jax.value_and_grad(loss_of, has_aux=True)(state.params)
        # Newton's method needs the loss itself, to differentiate it twice.
        extra = {"value_fn": lambda p: loss_of(p)[0]} if self.newton else None
        return self._update(state, batch, grads, extra, loss, logits, updates)

    @property
    def can_split_step(self) -> bool:
        """Whether :meth:`forward` then :meth:`backward` may stand for :meth:`train_step`.

        Not for Newton's method, which differentiates the loss twice, nor for a subclass that changes
        :meth:`train_step` itself: the two halves would skip its change.
        """
        return not self.newton and type(self).train_step is ClassificationTask.train_step

    def forward(self, state: TrainState, batch: dict[str, jax.Array]) -> tuple[Any, tuple[Any, ...]]:
        """The first half of :meth:`train_step`: the loss's VJP (holding the saved activations) and its aux.

        Jitted apart from :meth:`backward`, the saved activations reach the backward pass as materialised
        inputs: XLA's CPU backend then cannot fold the forward elementwise work into the layout
        transposes of the weight gradients, which it emits as slow untiled loops
        (``benchmarks/transpose_fusion.py``).
        """
        loss, vjp, (logits, updates) = jax.vjp(self._loss_of(state, batch), state.params, has_aux=True)
        return vjp, (loss, logits, updates)

    def backward(
        self, state: TrainState, batch: dict[str, jax.Array], vjp: Any, aux: tuple[Any, ...]
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        """The second half of :meth:`train_step`: gradients from ``vjp``, then the update."""
        loss, logits, updates = aux
        (grads,) = vjp(jnp.ones_like(loss))
        return self._update(state, batch, grads, None, loss, logits, updates)

    def _update(self, state, batch, grads, extra, loss, logits, updates) -> tuple[TrainState, dict[str, jax.Array]]:
        state = state.apply_gradients(grads, extra, batch_stats=updates.get("batch_stats", state.batch_stats))
        if state.avg is not None:
            cycle_end = jnp.isin(state.step, jnp.asarray(self.cycle_ends, jnp.int32)) if self.cycle_ends else False
            state = state.replace(
                avg=averaging.update(self.averaging, state.avg, state.params, state.batch_stats, state.step, cycle_end)
            )
        acc = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
        return state, {"loss": loss, "accuracy": acc}

    def _compute_variables(self, params: Any, batch_stats: Any) -> dict[str, Any]:
        """The variables a forward pass computes with: float32 masters cast to ``config.dtype``.

        Casting at use keeps parameters, batch statistics and optimizer state in float32 while the
        convolutions and matrix products run in bfloat16; gradients flow back through the cast in float32.
        """
        variables = {"params": params, "batch_stats": batch_stats}
        if self.dtype == jnp.float32:
            return variables
        return jax.tree.map(lambda v: v.astype(self.dtype) if jnp.issubdtype(v.dtype, jnp.floating) else v, variables)

    def batch_loss(self, state: TrainState, logits: jax.Array, batch: dict[str, jax.Array]) -> jax.Array:
        """The per-example training loss (subclasses add terms, e.g. distillation)."""
        del state  # the plain task needs nothing else
        return self.train_loss_fn(logits, batch["label"])

    def eval_step(self, state: TrainState, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """Sums over the real (unmasked) examples of one batch."""
        variables = self._compute_variables(state.params, state.batch_stats)
        logits = state.apply_fn(variables, batch["image"].astype(self.dtype), train=False).astype(jnp.float32)
        mask = batch["mask"]
        return {
            "loss_sum": jnp.sum(self.loss_fn(logits, batch["label"]) * mask),
            "confusion": metrics.confusion_matrix(batch["label"], jnp.argmax(logits, -1), self.num_classes, mask),
        }

    def summarize(self, sums: Iterable[dict[str, Any]]) -> tuple[dict[str, float], dict[str, Any]]:
        """Turns per-batch sums into scalar metrics and non-scalar results."""
        loss, confusion = 0.0, np.zeros((self.num_classes, self.num_classes), np.float64)
        for s in sums:
            loss += float(s["loss_sum"])
            confusion += np.asarray(s["confusion"], np.float64)
        n = confusion.sum()
        scalars = {"loss": loss / n if n else float("nan"), **metrics.summarize_confusion(confusion)}
        extras = {
            "per_class_accuracy": metrics.per_class_accuracy(confusion).tolist(),
            "confusion_matrix": confusion.astype(int).tolist(),
        }
        return scalars, extras

"""The task protocol: what the one training loop needs to know of a task.

A task turns a dataset's batches into a model, losses and predictions. It
never names a dataset's storage, and the loop never names a task's metric:

- ``input_keys`` and ``target_keys``: the batch keys the model and the losses read;
- ``__init__(config, meta, runs)``: the model from ``config.model`` and the dataset's
  :class:`~mlcv.data.DatasetMeta` (its classes, its shapes), never from a forced class count;
  ``runs`` are the finished runs named by :meth:`Task.required_runs` (a distillation's teachers), and
  ``train_boxes`` the training split's boxes when :meth:`Task.needs_train_boxes` says so;
- :meth:`Task.init_variables` and :meth:`Task.apply`: the forward pass;
- :meth:`Task.losses`: the training loss as a dict of named scalar terms, summed;
- :meth:`Task.predict`: the post-processing of the outputs that evaluators read, and
  :meth:`Task.combine` to average the predictions of an ensemble;
- :meth:`Task.default_evaluators` and ``headline``: what to evaluate and which metric matters;
  :meth:`Task.chance`: what those metrics are without learning.

The generic machinery (mixed precision, parameter averaging, Newton's method,
the CPU forward/backward split) lives in :mod:`mlcv.training.steps` and
wraps any task.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections


@dataclasses.dataclass(frozen=True)
class StepContext:
    """What a loss may read besides outputs and batch: the step (traced) and the frozen variables."""

    step: jax.Array
    frozen: Any = None


class Task(abc.ABC):
    """A supervised task on the one training loop; subclasses define the model, losses and predictions."""

    #: Batch keys the model reads, in the order :meth:`apply` passes them.
    input_keys: tuple[str, ...] = ("image",)
    #: Batch keys the losses and the evaluators read.
    target_keys: tuple[str, ...] = ()
    #: The metric that summaries, the CLI, sweeps, ablations and ensembles report (an evaluator's scalar).
    headline: str = "loss"
    #: Further test metrics that ablation tables show beside the headline (detection: AP50 and AP75).
    also_reported: tuple[str, ...] = ()

    def __init__(self, config: ml_collections.ConfigDict, meta: Any, runs: Sequence[Any] = ()):
        self.config = config
        self.meta = meta
        self.runs = tuple(runs)
        self.model: nn.Module = self.build_model()

    @classmethod
    def required_runs(cls, config: ml_collections.ConfigDict) -> tuple[str, ...]:
        """Workdirs of finished runs this task reads (the loop loads them and passes them as ``runs``)."""
        del config  # most tasks read none
        return ()

    @classmethod
    def needs_train_boxes(cls, config: ml_collections.ConfigDict) -> bool:
        """Whether the task is built from the training split's boxes (``train_boxes=``: YOLO's k-means priors).

        Tasks never read datasets; the training layer then reads the boxes (after the evaluation preprocessing,
        the frame the network sees) and passes them to ``__init__`` as ``train_boxes``.
        """
        del config  # most tasks need none
        return False

    @property
    def batch_keys(self) -> tuple[str, ...]:
        """Every key a batch must carry for this task."""
        return tuple(dict.fromkeys(self.input_keys + self.target_keys))

    def range_checks(self) -> dict[str, tuple[int, int | None]]:
        """Per batch key of class ids, ``(number of classes, ignore label or None)``: the data pipeline raises a
        ConfigError naming the dataset for any other value, on the host (on the device it would pass silently)."""
        return {}

    def train_range_checks(self) -> dict[str, tuple[int, int | None]]:
        """:meth:`range_checks` of the training batches (default: the same); an open-set task trains on some
        classes and is evaluated on others."""
        return self.range_checks()

    @abc.abstractmethod
    def build_model(self) -> nn.Module:
        """The model that ``self.config.model`` describes, sized from ``self.meta``."""

    def init_variables(self, rng: jax.Array, batch: Mapping[str, Any]) -> dict[str, Any]:
        """The model's variables, initialised from the shapes of one example of ``batch``."""
        inputs = [jnp.asarray(batch[k][:1]) for k in self.input_keys]
        return self.model.init({"params": rng, "dropout": rng}, *inputs, train=False)

    def apply(self, variables: Mapping[str, Any], batch: Mapping[str, jax.Array], **kwargs: Any) -> Any:
        """The model's outputs on ``batch``; ``kwargs`` (train, rngs, mutable) go to ``Module.apply``."""
        return self.model.apply(variables, *(batch[k] for k in self.input_keys), **kwargs)

    def frozen_variables(self) -> Any:
        """Variables a step reads but never updates (a distillation's teachers), or None."""
        return None

    @abc.abstractmethod
    def losses(self, outputs: Any, batch: Mapping[str, jax.Array], context: StepContext) -> dict[str, jax.Array]:
        """The training loss as named scalar terms (means over the batch); the loss minimised is their sum."""

    def train_metrics(self, outputs: Any, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """Cheap metrics of a training batch, logged as ``train/<name>`` beside the loss."""
        del outputs, batch
        return {}

    @abc.abstractmethod
    def predict(self, outputs: Any, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """Evaluation outputs that the evaluators read (per example), including the per-example ``loss``."""

    def combine(self, predictions: Sequence[Mapping[str, jax.Array]], batch: Mapping[str, jax.Array]) -> dict:
        """The prediction of an ensemble of members (default: the mean of each output)."""
        del batch
        return {k: jnp.mean(jnp.stack([p[k] for p in predictions]), axis=0) for k in predictions[0]}

    def chance(self) -> dict[str, float]:
        """Metric values a model reaches without learning (a guess), by evaluator metric name.

        A run whose validation metrics are no better ends with a warning
        (:mod:`mlcv.training.sanity`). Default: none known, nothing is judged.
        """
        return {}

    @abc.abstractmethod
    def default_evaluators(self) -> dict[str, dict[str, Any]]:
        """Evaluators used when the config names none: ``{name: {"type": ..., **kwargs}}``."""

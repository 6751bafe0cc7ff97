"""Image classification: softmax cross-entropy or RMSE-to-one-hot on logits."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from mlcv import config as config_lib
from mlcv import losses, models
from mlcv.config import ConfigError
from mlcv.tasks.base import StepContext, Task


class ClassificationTask(Task):
    """A classifier trained on batches ``{'image', 'label'}``; the model returns logits."""

    input_keys = ("image",)
    target_keys = ("label",)
    headline = "accuracy"

    def __init__(self, config: ml_collections.ConfigDict, meta: Any, runs: Sequence[Any] = ()):
        if not getattr(meta, "num_classes", None):
            raise ConfigError(f"dataset {config.data.name!r} (config.data.name) declares no classes to classify")
        # Evaluation reports the plain loss, so runs with and without label
        # smoothing compare on the same scale.
        self.loss_fn = losses.get(config.loss)
        config_lib.check(config, "label_smoothing", config_lib.FRACTION)
        smoothing = float(config.get("label_smoothing", 0.0))
        if smoothing and config.loss != "softmax_xent":
            raise ConfigError("config.label_smoothing applies to config.loss='softmax_xent' only")
        self.train_loss_fn = (
            functools.partial(losses.softmax_cross_entropy, label_smoothing=smoothing) if smoothing else self.loss_fn
        )
        super().__init__(config, meta, runs)

    def build_model(self) -> nn.Module:
        """``config.model`` with as many outputs as the dataset has classes."""
        return models.from_config(self.config.model, num_classes=self.meta.num_classes)

    def batch_loss(self, logits: jax.Array, batch: Mapping[str, jax.Array], context: StepContext) -> jax.Array:
        """The per-example training loss (distillation adds the teacher's term)."""
        del context  # the plain task needs nothing else
        return self.train_loss_fn(logits, batch["label"])

    def losses(self, outputs: jax.Array, batch: Mapping[str, jax.Array], context: StepContext) -> dict[str, jax.Array]:
        """One term, named after ``config.loss``."""
        return {self.config.loss: self.batch_loss(outputs, batch, context).mean()}

    def train_metrics(self, outputs: jax.Array, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """Accuracy of the training batch."""
        return {"accuracy": jnp.mean(jnp.argmax(outputs, -1) == batch["label"])}

    def predict(self, outputs: jax.Array, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """Logits and the per-example (unsmoothed) loss."""
        return {"logits": outputs, "loss": self.loss_fn(outputs, batch["label"])}

    def combine(self, predictions: Sequence[Mapping[str, jax.Array]], batch: Mapping[str, jax.Array]) -> dict:
        """Averages the members' class probabilities; its log stands for the logits, and the loss is its NLL."""
        probs = jnp.mean(jnp.stack([jax.nn.softmax(p["logits"], -1) for p in predictions]), axis=0)
        log_probs = jnp.log(jnp.maximum(probs, jnp.finfo(probs.dtype).tiny))
        nll = -jnp.take_along_axis(log_probs, batch["label"][:, None].astype(jnp.int32), -1)[:, 0]
        return {"logits": log_probs, "probs": probs, "loss": nll}

    def chance(self) -> dict[str, float]:
        """A uniform guess: 1 / classes for accuracy and mean class accuracy.

        For mean class accuracy it is exact for any guess that ignores the image; accuracy of a
        constant guess is the majority class's share, which meta does not know (reading every label
        to find it would cost a pass over the data).
        """
        k = self.meta.num_classes
        return {"accuracy": 1.0 / k, "mean_class_accuracy": 1.0 / k}

    def default_evaluators(self) -> dict[str, dict[str, Any]]:
        """The loss, and accuracy, mean class accuracy and the confusion matrix from one bincount."""
        return {"loss": {"type": "loss"}, "classification": {"type": "classification"}}

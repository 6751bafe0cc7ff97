"""Knowledge distillation: a student classifier trained on a teacher's softened outputs.

The teacher is one finished run or an ensemble of them (``config.distill.
teacher_workdirs``), each at the checkpoint its own run chose on
validation; the ensemble's temperature-T probabilities are averaged. The
teachers' variables travel in ``TrainState.frozen``: they are inputs of the
jitted step rather than constants compiled into it, and a resumed run
reloads them from its own checkpoint.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from mlcv import ensemble, losses
from mlcv.config import ConfigError
from mlcv.tasks.base import TrainState
from mlcv.tasks.classification import ClassificationTask


class DistillationTask(ClassificationTask):
    """Classification whose training loss mixes the teacher's soft targets with the labels."""

    def __init__(self, config: ml_collections.ConfigDict, model: nn.Module, num_classes: int):
        super().__init__(config, model, num_classes)
        dc = config.get("distill")
        if dc is None or not dc.get("teacher_workdirs"):
            raise ConfigError("the distillation task needs config.distill.teacher_workdirs")
        if config.loss != "softmax_xent":
            raise ConfigError("the distillation task trains with config.loss='softmax_xent'")
        self.temperature = float(dc.temperature)
        self.alpha = float(dc.alpha)
        if self.temperature <= 0 or not 0.0 <= self.alpha <= 1.0:
            raise ConfigError("config.distill needs temperature > 0 and 0 <= alpha <= 1")
        self.teachers = [ensemble.load_run(w) for w in dc.teacher_workdirs]
        for t in self.teachers:
            if t.config.data.name != config.data.name:
                raise ConfigError(f"teacher {t.workdir} was trained on {t.config.data.name}, not {config.data.name}")

    def init(self, rng: jax.Array, batch: dict[str, Any], tx: optax.GradientTransformation) -> TrainState:
        """The student's state, with the teachers' variables frozen beside it."""
        state = super().init(rng, batch, tx)
        return state.replace(frozen=[jax.tree.map(jnp.asarray, t.variables) for t in self.teachers])

    def batch_loss(self, state: TrainState, logits: jax.Array, batch: dict[str, jax.Array]) -> jax.Array:
        """alpha T^2 KL(teacher^T || student^T) + (1 - alpha) CE(student, label), per example."""
        probs = [
            jax.nn.softmax(t.model.apply(v, batch["image"], train=False) / self.temperature, axis=-1)
            for t, v in zip(self.teachers, state.frozen, strict=True)
        ]
        teacher = jax.lax.stop_gradient(jnp.mean(jnp.stack(probs), axis=0))
        return losses.distillation(logits, teacher, batch["label"], self.temperature, self.alpha)

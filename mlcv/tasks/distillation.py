"""Knowledge distillation: a student classifier trained on a teacher's softened outputs.

The teacher is one finished run or an ensemble of them (``config.distill.
teacher_workdirs``), each at the checkpoint its own run chose on
validation; the ensemble's temperature-T probabilities are averaged. The
loop loads the teachers (:meth:`DistillationTask.required_runs`) and their
variables travel in ``TrainState.frozen``: they are inputs of the jitted
step rather than constants compiled into it, and a resumed run reloads
them from its own checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from mlcv import losses
from mlcv.config import ConfigError
from mlcv.tasks.base import StepContext
from mlcv.tasks.classification import ClassificationTask


class DistillationTask(ClassificationTask):
    """Classification whose training loss mixes the teacher's soft targets with the labels."""

    @classmethod
    def required_runs(cls, config: ml_collections.ConfigDict) -> tuple[str, ...]:
        """The teachers' workdirs (``config.distill.teacher_workdirs``)."""
        dc = config.get("distill")
        if dc is None or not dc.get("teacher_workdirs"):
            raise ConfigError("the distillation task needs config.distill.teacher_workdirs")
        return tuple(dc.teacher_workdirs)

    def __init__(self, config: ml_collections.ConfigDict, meta: Any, runs: Sequence[Any] = ()):
        super().__init__(config, meta, runs)
        dc = config.distill
        if config.loss != "softmax_xent":
            raise ConfigError("the distillation task trains with config.loss='softmax_xent'")
        self.temperature = float(dc.temperature)
        self.alpha = float(dc.alpha)
        if self.temperature <= 0 or not 0.0 <= self.alpha <= 1.0:
            raise ConfigError("config.distill needs temperature > 0 and 0 <= alpha <= 1")
        if len(self.runs) != len(self.required_runs(config)):
            raise ConfigError("the distillation task was given no teacher runs (config.distill.teacher_workdirs)")
        for t in self.runs:
            if t.config.data.name != config.data.name:
                raise ConfigError(f"teacher {t.workdir} was trained on {t.config.data.name}, not {config.data.name}")

    def frozen_variables(self) -> Any:
        """The teachers' variables, read by every step and never updated."""
        return [jax.tree.map(jnp.asarray, t.variables) for t in self.runs]

    def batch_loss(self, logits: jax.Array, batch: Mapping[str, jax.Array], context: StepContext) -> jax.Array:
        """alpha T^2 KL(teacher^T || student^T) + (1 - alpha) CE(student, label), per example."""
        probs = [
            jax.nn.softmax(t.task.model.apply(v, batch["image"], train=False) / self.temperature, axis=-1)
            for t, v in zip(self.runs, context.frozen, strict=True)
        ]
        teacher = jax.lax.stop_gradient(jnp.mean(jnp.stack(probs), axis=0))
        return losses.distillation(logits, teacher, batch["label"], self.temperature, self.alpha)

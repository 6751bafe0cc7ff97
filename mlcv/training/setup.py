"""Everything a training run builds from its config before any file is written.

:class:`RunSetup` resolves the dataset and its meta, the task, the evaluators, the
step builder, durations in steps, the optimizer and its schedules, and checks every
value, so that a bad config fails with one :class:`~mlcv.config.ConfigError` naming
the key while the workdir is still untouched.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import types
import typing
from typing import Any

import ml_collections

from mlcv import config as config_lib
from mlcv import data, optim
from mlcv.config import ConfigError, Range
from mlcv.data import in_memory, pipeline
from mlcv.data import ops as ops_lib
from mlcv.training import runs, steps, transfer

#: The accepted range of each numeric key the loop reads (durations are checked by config.steps).
RANGES: dict[str, Range] = {
    # Grain's sampler takes an unsigned 32-bit seed; JAX would take more but both must agree.
    "seed": Range(0, 2**32 - 1, integer=True),
    "data.batch_size": config_lib.POSITIVE_INT,
    "data.eval_batch_size": config_lib.POSITIVE_INT,
    "data.worker_count": config_lib.NON_NEGATIVE_INT,
    # P x K identity batches (metric learning); 0 = plain shuffled batches. The sampler checks the rest.
    "data.identities_per_batch": config_lib.NON_NEGATIVE_INT,
    "data.images_per_identity": config_lib.NON_NEGATIVE_INT,
    "early_stopping.patience_evals": config_lib.NON_NEGATIVE_INT,  # 0 never stops early
    "early_stopping.min_delta": config_lib.NON_NEGATIVE,
    # At least the newest checkpoint must stay: a restart resumes from it.
    "checkpoint.keep": config_lib.POSITIVE_INT,
    "averaging.ema_decay": config_lib.FRACTION,
    "averaging.start_step": config_lib.NON_NEGATIVE_INT,
}


def check_values(config: ml_collections.ConfigDict) -> None:
    """Checks every numeric value the loop and the optimizer read, before any data is loaded.

    Model keyword arguments are the model's own business, except a drop rate (any ``config.model``
    key naming ``dropout``), which is a probability whatever the model.

    Raises:
      ConfigError: ``config.<key>=<value>: must be <range>``.
    """
    for key, accepted in RANGES.items():
        config_lib.check(config, key, accepted)
    for key, value in (config.get("model") or {}).items():
        if "dropout" in key and not isinstance(value, (bool, str)):
            config_lib.check(config, f"model.{key}", config_lib.FRACTION)
    if "optim" in config:
        optim.check(config.optim)


def check_model_fields(model_config: ml_collections.ConfigDict | None, model: Any) -> None:
    """Checks each ``config.model`` value against the type the model's dataclass field declares.

    Flax modules are dataclasses with annotated fields; a value of the wrong type (a string where
    ``Sequence[int]`` is declared) would otherwise fail deep inside the first forward pass.
    """
    if model_config is None or not dataclasses.is_dataclass(model):
        return
    try:
        hints = typing.get_type_hints(type(model))
    except Exception:  # noqa: BLE001 - an annotation that does not resolve is not checked
        return
    for key, value in model_config.items():
        hint = hints.get(key)
        if key == "name" or hint is None:
            continue
        value = tuple(value) if isinstance(value, list) else value  # as models.from_config passes it
        if not _fits(value, hint):
            shown = repr(hint).replace("typing.", "").replace("collections.abc.", "")
            raise ConfigError(f"config.model.{key}={value!r}: must be {shown} ({type(model).__name__}.{key})")


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` has the annotated type; kinds of annotation it does not know pass."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin is typing.Literal:
        return value in args
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (tuple, list, collections.abc.Sequence):
        if not isinstance(value, (tuple, list)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_fits(v, a) for v, a in zip(value, args, strict=True))
        return not args or all(_fits(v, args[0]) for v in value)
    return True


class RunSetup:
    """Everything built from the config before any file is written."""

    def __init__(self, config: ml_collections.ConfigDict):
        # Plain values first: a bad one fails in a blink, before any data is read.
        check_values(config)
        dc = config.data
        self.spec = data.get(dc.name)
        kw = {"data_dir": dc.get("data_dir"), "download": bool(dc.get("download", True))}
        self.sources = {
            role: data.source(self.spec, runs.dataset_split(config, self.spec, role), **kw)
            for role in ("train", "validation", "test")
        }
        for pp_key in ("pp_train", "pp_eval"):
            try:
                ops_lib.parse(dc[pp_key], self.spec.op_defaults)
            except ValueError as e:
                raise ConfigError(f"config.data.{pp_key}: {e}") from None
        self.meta = data.meta(self.spec, self.sources["train"])
        self.task = runs.build_task(config, self.meta, self.sources["train"])
        self.init_from = transfer.load(config, runs.load_run)  # a bad config.init_from fails here, before any file
        check_model_fields(config.get("model"), getattr(self.task, "model", None))
        self.eval_configs = runs.evaluator_configs(config, self.task)
        # Built once here so that a bad evaluator config fails before anything is written.
        evs = runs.build_evaluators(self.eval_configs, self.meta).values()
        self.directions = {name: mode for ev in evs for name, mode in ev.directions.items()}
        self.percent = frozenset().union(*(ev.percent for ev in evs))
        for key in ("batch_size", "eval_batch_size"):
            try:
                pipeline.per_process_batch(dc[key])
            except ValueError as e:
                raise ConfigError(f"config.data.{key}: {e}") from None
        n_train = len(self.sources["train"])
        if dc.batch_size > n_train:
            raise ConfigError(
                f"config.data.batch_size={dc.batch_size}: must be an integer in [1, {n_train}], "
                f"the training examples of {dc.name!r}"
            )
        if dc.get("identities_per_batch"):  # P x K batches: a class with fewer than K images fails here, not mid-run
            pk = (dc.identities_per_batch, dc.images_per_identity)
            pipeline.identity_sampler(self.sources["train"], pk, dc.batch_size, config.seed)
        # config.data.pipeline, "auto" resolved: "record", "batch" or "device" (mlcv.training.inputs).
        self.pipeline = in_memory.choose(config, self.sources["train"], self.task.batch_keys, self.spec.op_defaults)
        self.steps_per_epoch = spe = n_train // dc.batch_size
        self.total_steps = config_lib.steps(config, "total", spe)
        if self.total_steps is None:
            raise ConfigError("config.total_steps and config.total_epochs are both unset: set one (>= 1)")
        # Unset (None) periods default to the whole run (evaluate at the end) and to every evaluation.
        self.eval_every = config_lib.steps(config, "eval_every", spe) or self.total_steps
        self.log_every = config_lib.steps(config, "log_every", spe) or self.eval_every
        # Checked here so that the loop, which reads it after the first write, never fails on it.
        config_lib.steps(config.checkpoint, "every", spe, where="config.checkpoint")
        self.tx = optim.make(config.optim, self.total_steps, steps_per_epoch=spe)
        self.lr_schedule = optim.schedule(config.optim, self.total_steps, steps_per_epoch=spe)
        self.momentum_schedule = optim.momentum_schedule(config.optim, self.total_steps)
        self.cycle_ends = tuple(optim.cycle_ends(config.optim, self.total_steps))
        self.builder = steps.StepBuilder(config, self.task, self.cycle_ends)
        self.split_step = steps.split_step(config, self.builder)
        self.snapshots = self.cycle_ends if config.get("snapshot_ensemble", False) else ()
        if self.snapshots and len(self.snapshots) < 2:
            raise ConfigError("config.snapshot_ensemble needs config.optim.schedule='cosine_restarts' with cycles >= 2")
        es = config.early_stopping
        # Model selection names any evaluator's metric; its direction defaults to the evaluator's.
        self.select_metric = es.get("metric") or self.task.headline
        if self.select_metric not in self.directions:
            raise ConfigError(
                f"config.early_stopping.metric={self.select_metric!r} is not a metric of the evaluators "
                f"({', '.join(sorted(self.directions))})"
            )
        self.select_mode = es.get("mode") or self.directions[self.select_metric]
        if self.select_mode not in ("max", "min"):
            raise ConfigError(f"config.early_stopping.mode must be 'max' or 'min', not {self.select_mode!r}")
        self.plateau_metric = config.optim.get("plateau_metric") or "loss"
        if config.optim.get("plateau_factor") and self.plateau_metric not in self.directions:
            raise ConfigError(
                f"config.optim.plateau_metric={self.plateau_metric!r} is not a metric of the evaluators "
                f"({', '.join(sorted(self.directions))})"
            )

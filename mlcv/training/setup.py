"""Everything a training run builds from its config before any file is written.

:class:`RunSetup` resolves the dataset and its meta, the task, the evaluators, the
step builder, durations in steps, the optimizer and its schedules, and checks every
value, so that a bad config fails with one :class:`~mlcv.config.ConfigError` naming
the key while the workdir is still untouched.
"""

from __future__ import annotations

import ml_collections

from mlcv import config as config_lib
from mlcv import data, optim
from mlcv.config import ConfigError
from mlcv.data import ops as ops_lib
from mlcv.data import pipeline
from mlcv.training import runs, steps


class RunSetup:
    """Everything built from the config before any file is written."""

    def __init__(self, config: ml_collections.ConfigDict):
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
        self.task = runs.build_task(config, self.meta)
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
        self.steps_per_epoch = len(self.sources["train"]) // dc.batch_size
        if self.steps_per_epoch < 1:
            raise ConfigError(
                f"config.data.batch_size={dc.batch_size} exceeds the {len(self.sources['train'])} training examples"
            )
        spe = self.steps_per_epoch
        self.total_steps = config_lib.steps(config, "total", spe)
        if not self.total_steps:
            raise ConfigError("set config.total_steps or config.total_epochs")
        self.eval_every = config_lib.steps(config, "eval_every", spe) or self.total_steps
        self.log_every = config_lib.steps(config, "log_every", spe) or self.eval_every
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

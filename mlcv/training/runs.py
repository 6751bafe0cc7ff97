"""Finished runs read back from their workdirs, and ensembles of them evaluated through their task.

A :class:`Run` is a config, the task it builds and the variables of one
checkpoint step. An ensemble combines the members' predictions with the
task's :meth:`~mlcv.tasks.base.Task.combine` (the mean of the class
probabilities for a classifier) and evaluates the result with the same
evaluators as a single run, so its figures are the task's own metrics.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from mlcv import data, evaluators, tasks
from mlcv.config import ConfigError
from mlcv.data import pipeline
from mlcv.training import checkpoint
from mlcv.training.steps import StepBuilder


def dataset_split(config: ml_collections.ConfigDict, spec: data.DatasetSpec, role: str) -> str:
    """The TFDS split of ``role`` (train, validation, test): ``config.data.<role>_split`` or the dataset's own."""
    split = config.data.get(f"{role}_split") or spec.splits.get(role)
    if not split:
        raise ConfigError(f"dataset {spec.name!r} (config.data.name) has no {role} split")
    return split


def build_task(config: ml_collections.ConfigDict, meta: Any, train_source: Any = None) -> tasks.Task:
    """The task ``config.task`` names, given the finished runs it reads (:meth:`Task.required_runs`) and, when it
    asks (:meth:`Task.needs_train_boxes`), the boxes of the training split after ``config.data.pp_eval``.

    ``train_source``: the training split's data source, opened from the config when needed and not given.
    """
    cls = tasks.get(config.task)
    kwargs = {}
    if cls.needs_train_boxes(config):
        spec = data.get(config.data.name)
        if train_source is None:
            train_source = data.source(spec, dataset_split(config, spec, "train"), data_dir=config.data.get("data_dir"))
        try:
            boxes = pipeline.split_boxes(train_source, pp=config.data.pp_eval, op_defaults=spec.op_defaults)
        except (KeyError, ValueError) as e:
            raise ConfigError(
                f"config.task={config.task!r} needs the training boxes (config.data.pp_eval): {e}"
            ) from None
        kwargs["train_boxes"] = [boxes]
    return cls(config, meta, [load_run(w) for w in cls.required_runs(config)], **kwargs)


def evaluator_configs(config: ml_collections.ConfigDict, task: tasks.Task) -> dict[str, dict[str, Any]]:
    """``config.evals`` (name -> ``{"type": ..., **kwargs}``) when the config sets it, else the task's defaults."""
    evals = config.get("evals")
    if evals:
        return {name: dict(cfg) for name, cfg in evals.items()}
    return task.default_evaluators()


def build_evaluators(configs: dict[str, dict[str, Any]], meta: Any) -> dict[str, evaluators.Evaluator]:
    """One evaluator per entry, its classes filled from the dataset's meta."""
    return {name: evaluators.build(cfg, meta) for name, cfg in configs.items()}


def results(evs: dict[str, evaluators.Evaluator]) -> tuple[dict[str, float], dict[str, Any]]:
    """The scalars and extras of every evaluator after a pass, merged (evaluators name distinct metrics)."""
    scalars, extras = {}, {}
    for ev in evs.values():
        s, e = ev.result()
        scalars.update(s)
        extras.update(e)
        ev.reset()
    return scalars, extras


@dataclasses.dataclass
class Run:
    """A trained model read back from its workdir."""

    workdir: Path
    step: int
    config: ml_collections.ConfigDict
    task: tasks.Task
    variables: dict[str, Any]

    def __post_init__(self):
        self._predict = jax.jit(StepBuilder(self.config, self.task).predict)

    def predict(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """The task's evaluation predictions for a preprocessed batch."""
        return self._predict(self.variables, batch)


def load_run(workdir: str | Path, step: int | None = None) -> Run:
    """Reads a run: its config, its task, and the variables of ``step``.

    ``step`` defaults to the step chosen on validation (``summary.json``'s
    ``best_step``), else the newest checkpoint.
    """
    workdir = Path(workdir)
    cfg_path = workdir / "config.json"
    if not cfg_path.is_file():
        raise ConfigError(f"{workdir} is not a run directory: no config.json")
    config = ml_collections.ConfigDict(json.loads(cfg_path.read_text()))
    ckpt_dir = workdir / "checkpoints"
    steps = sorted(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit()) if ckpt_dir.is_dir() else []
    if step is None:
        summary = workdir / "summary.json"
        step = json.loads(summary.read_text())["best_step"] if summary.is_file() else (steps[-1] if steps else None)
    if step is None or step not in steps:
        raise ConfigError(f"{workdir} has no checkpoint of step {step} (it has {steps})")
    state = checkpoint.read_state(ckpt_dir / str(step))
    spec = data.get(config.data.name)
    # A declared dataset needs no record for its meta; a catalogue one reads its TFDS info.
    task = build_task(config, data.meta(spec, data_dir=config.data.get("data_dir")))
    variables = {"params": state["params"], "batch_stats": state.get("batch_stats") or {}}
    return Run(workdir=workdir, step=int(step), config=config, task=task, variables=variables)


def evaluate_runs(runs: Sequence[Run], role: str = "test", batch_size: int = 512) -> dict[str, Any]:
    """Each member's metrics and the ensemble's on ``role``, with the first member's evaluators.

    Every member reads the split through the first member's evaluation
    preprocessing; members must share the dataset.
    """
    first = runs[0].config
    for r in runs[1:]:
        if r.config.data.name != first.data.name:
            raise ConfigError(f"ensemble members use different datasets: {first.data.name}, {r.config.data.name}")
    spec = data.get(first.data.name)
    src = data.source(spec, dataset_split(first, spec, role), data_dir=first.data.get("data_dir"))
    meta, task = data.meta(spec, src), runs[0].task
    cfgs = evaluator_configs(first, task)
    member_evs = [build_evaluators(cfgs, meta) for _ in runs]
    ensemble_evs = build_evaluators(cfgs, meta)
    batch_fns = {name: jax.jit(ev.batch_fn) for name, ev in ensemble_evs.items()}
    combine = jax.jit(task.combine)
    keys = tuple(dict.fromkeys(k for r in runs for k in r.task.batch_keys))
    for batch in pipeline.eval_batches(
        src,
        batch_size=batch_size,
        pp=first.data.pp_eval,
        op_defaults=spec.op_defaults,
        keys=keys,
        checks=(first.data.name, task.range_checks()),
    ):
        preds = [r.predict(batch) for r in runs]
        for evs, p in [*zip(member_evs, preds, strict=True), (ensemble_evs, combine(preds, batch))]:
            for name, ev in evs.items():
                ev.update(jax.device_get(batch_fns[name](p, batch)))
    members = [results(evs)[0] for evs in member_evs]
    return {
        "split": role,
        "members": [{"workdir": str(r.workdir), "step": r.step, **m} for r, m in zip(runs, members, strict=True)],
        "ensemble": results(ensemble_evs)[0],
        "mean_member": {k: float(np.mean([m[k] for m in members])) for k in members[0]},
    }

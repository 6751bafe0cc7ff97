"""Runs a fitted method into a workdir: the closed-form counterpart of :func:`mlcv.training.loop.run`."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import jax
import ml_collections

from mlcv import classic, report, workdirs


def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> dict[str, Any]:
    """Fits ``config.task``'s method, evaluates it on validation and test, writes the workdir.

    Fitting is deterministic given ``config.seed``, so re-running the same
    command in the same workdir fits again and writes the same numbers;
    ``metrics.jsonl`` is rewritten, not appended to.

    Raises:
      ConfigError: the config names something missing or holds a bad value;
        raised before anything is written to ``workdir``.
      WorkdirBusy: another process runs in ``workdir`` (a ConfigError); nothing is written.
      WorkdirError: a file of ``workdir`` cannot be written; names the path and the cause.
    """
    t_start = time.time()
    method = classic.get(config.task)(config)
    workdir = Path(workdir)
    workdirs.check_config(workdir, config)
    # The lock is the first write and is held to the end, so a second launch here is refused at once.
    # Processes of a multi-process run besides 0 do not lock: on a shared file system they would refuse
    # one another.
    with workdirs.lock(workdir, active=jax.process_index() == 0):
        summary = _fit(config, method, workdir, t_start)
    workdirs.warn_non_finite(summary, workdir / "summary.json")
    return summary


def _fit(config: ml_collections.ConfigDict, method: Any, workdir: Path, t_start: float) -> dict[str, Any]:
    """Fits, evaluates and writes the workdir's files; :func:`run` holds the workdir's lock around it."""
    workdirs.write_text(workdir / "config.json", config.to_json_best_effort(indent=2, sort_keys=True))
    writer = report.MetricWriter(workdir, tensorboard=bool(config.get("tensorboard", False)))
    writer.truncate_after(-1)
    t_fit = time.time()
    facts = method.fit(writer.write)
    fit_s = time.time() - t_fit
    t_eval = time.time()
    validation = method.evaluate("validation")
    test = method.evaluate("test")
    eval_s = time.time() - t_eval
    writer.close()
    plots = workdir / "plots"
    plots.mkdir(exist_ok=True)
    method.plot(plots)
    summary = {
        "task": config.task,
        "validation": validation,
        "test": test,
        "fit": facts,
        "fit_time_s": fit_s,
        "eval_time_s": eval_s,
        "wall_time_s": time.time() - t_start,
    }
    summary["headline"] = method.headline(summary)
    workdirs.write_json(workdir / "summary.json", summary)
    return summary

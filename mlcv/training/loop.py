"""The one generic training loop.

``run(config, workdir)`` validates the config, trains with periodic
validation, early stopping and asynchronous checkpoints, and ends by
evaluating the checkpoint that was best on validation on the test split,
once. Re-running the same command on the same workdir resumes from the
newest complete checkpoint and reaches the same final numbers.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from mlcv import config as config_lib
from mlcv import optim, report, workdirs
from mlcv.data import pipeline
from mlcv.training import checkpoint, inputs, interrupts, runs, sanity, selection, sharding, steps
from mlcv.training.setup import RunSetup


class NonFiniteError(RuntimeError):
    """Training produced a NaN or infinity; the message names step and metric."""


@dataclasses.dataclass(frozen=True)
class Every:
    """When a periodic action runs: every ``steps`` steps (None: never), at the steps in ``at``, and
    at the last step when ``last``."""

    steps: int | None = None
    at: frozenset[int] = frozenset()
    last: bool = False

    def __call__(self, step: int, total: int) -> bool:
        return bool(self.steps and step % self.steps == 0) or step in self.at or (self.last and step == total)


def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> dict[str, Any]:
    """Trains and evaluates the experiment ``config`` in ``workdir``.

    Returns the contents of ``summary.json``.

    Raises:
      ConfigError: the config names something missing or holds a bad value;
        raised before anything is written to ``workdir``.
      NonFiniteError: the loss became NaN or infinite; the newest checkpoint
        on disk is the last good one.
      WorkdirBusy: another process runs in ``workdir`` (a ConfigError); nothing is written.
      WorkdirError: a file of ``workdir`` cannot be written; names the path and the cause.
    """
    t_start = time.time()
    setup = RunSetup(config)
    workdir = Path(workdir)
    workdirs.check_config(workdir, config)
    is_main = jax.process_index() == 0
    # Only process 0 writes, so only it locks; the lock is its first write and is held to the end.
    with workdirs.lock(workdir, active=is_main):
        if is_main:
            workdirs.write_text(workdir / "config.json", config.to_json_best_effort(indent=2, sort_keys=True))
        trainer = _Trainer(config, setup, workdir)
        trainer.train()
        summary = trainer.finish(t_start)
    if is_main:
        workdirs.warn_non_finite(summary, workdir / "summary.json")
    return summary


class _Trainer:
    """The state of one run between its set-up and its summary."""

    def __init__(self, config: ml_collections.ConfigDict, setup: RunSetup, workdir: Path):
        self.config, self.setup, self.workdir = config, setup, workdir
        self.is_main = jax.process_index() == 0
        self.mesh = sharding.data_mesh()
        dc = config.data
        checks = (dc.name, setup.task.range_checks())
        self._pp = {"op_defaults": setup.spec.op_defaults, "keys": setup.task.batch_keys, "checks": checks}
        self.train_iter = inputs.train_stream(config, setup, self.mesh)  # config.data.pipeline's batches, ahead
        example = self._example("train", dc.batch_size, dc.pp_train)
        state = setup.builder.init(jax.random.PRNGKey(config.seed), example, setup.tx, setup.init_from)
        self.state = sharding.put_replicated(state, self.mesh)
        self.ckpts = checkpoint.Checkpoints(
            workdir / "checkpoints", keep=config.checkpoint.keep, keep_steps=setup.snapshots
        )
        self.loop = {
            "step": 0,
            "best_value": None,
            "best_step": None,
            "bad_evals": 0,
            "stopped_early": False,
            "train_time_s": 0.0,
        }
        self.writer = report.MetricWriter(workdir, tensorboard=config.tensorboard) if self.is_main else None
        # The newest step that verifies; corrupt newer ones are named and dropped (CheckpointError if none).
        resumed = self.ckpts.restore_latest(self.state, self.train_iter, say=self._say)
        if resumed is not None:
            start, state, self.loop = resumed
            self.state = sharding.put_replicated(state, self.mesh)
            self._say(f"resumed from step {start} of {workdir}")
        elif setup.init_from is not None:
            self._say(setup.builder.transfer_line)
        if self.writer:  # records past the restored step (all of them without one) are redone
            self.writer.truncate_after(resumed[0] if resumed else 0)
        ckpt_every = config_lib.steps(config.checkpoint, "every", setup.steps_per_epoch)
        # The periodic actions of the loop and when each runs. Validation (with the plateau rule and
        # early stopping it feeds) is followed by a checkpoint; snapshots are checkpoints kept for good.
        self.schedule = {
            "log": Every(setup.log_every),
            "evaluate": Every(setup.eval_every, last=True),
            "checkpoint": Every(ckpt_every, at=frozenset(setup.snapshots)),
        }
        self.averaged = self.state.avg is not None
        self._compile(example)
        # Step metrics not yet logged; a save on a signal carries them, so the resumed log is unchanged.
        self._pending: list[tuple[int, Any]] = [tuple(p) for p in self.loop.pop("pending_metrics", [])]
        self.stops = interrupts.StopRequests()

    def _say(self, line: str) -> None:
        if self.is_main:
            tqdm.write(line, file=sys.stderr)

    def _example(self, role: str, global_batch: int, pp: str) -> dict[str, np.ndarray]:
        size = global_batch // jax.process_count()
        return pipeline.example_batch(self.setup.sources[role], size=size, pp=pp, **self._pp)

    def _compile(self, example: dict[str, np.ndarray]) -> None:
        """Compiles the train and eval steps ahead of time, so compile time is measured apart."""
        t0 = time.time()
        repl, data_sh = sharding.replicated(self.mesh), sharding.batch_sharded(self.mesh)
        dc = self.config.data
        batch = sharding.put_batch(example, self.mesh)
        self.train_step = steps.compile_train_step(
            self.setup.builder, self.state, batch, self.mesh, split=self.setup.split_step
        )
        eval_example = pipeline.pad_batch(
            self._example("validation", dc.eval_batch_size, dc.pp_eval), dc.eval_batch_size // jax.process_count()
        )
        self.evaluators = runs.build_evaluators(self.setup.eval_configs, self.setup.meta)
        self.must_be_finite = frozenset().union(*(ev.must_be_finite for ev in self.evaluators.values()))
        self.eval_step = (
            jax.jit(self.setup.builder.eval_step(self.evaluators), in_shardings=(repl, data_sh), out_shardings=repl)
            .lower(self.state, sharding.put_batch(eval_example, self.mesh))
            .compile()
        )
        self.compile_s = time.time() - t0

    def evaluate(
        self, role: str, average: bool = False, fit: bool = False, only: frozenset[str] | None = None
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """Every evaluator's scalars and extras on one split, of the raw or the averaged parameters.

        ``fit``: evaluators that fit something on this split (a verification threshold on validation) fit it
        from the pass, before their results, and keep it for the next passes (the test's). ``only``: the names of
        the evaluators that accumulate and report; the others skip the pass (a fitting pass over training data).
        """
        evs = {n: ev for n, ev in self.evaluators.items() if only is None or n in only}
        dc = self.config.data
        batches = pipeline.eval_batches(
            self.setup.sources[role], batch_size=dc.eval_batch_size, pp=dc.pp_eval, **self._pp
        )
        # The averaged view has the same structure as the state: one compiled eval step serves both.
        state = self.state.averaged() if average else self.state
        for b in batches:
            fetched = jax.device_get(self.eval_step(state, sharding.put_batch(b, self.mesh)))
            for name, ev in evs.items():
                ev.update(fetched[name])
        for ev in evs.values() if fit else ():
            if role in ev.fit_roles:
                ev.fit(role)
        return runs.results(evs)

    def _nonfinite(self, what: str, value: float, step: int) -> NonFiniteError:
        self.ckpts.wait()  # the checkpoint being written predates the bad step
        return NonFiniteError(
            f"non-finite {what} ({value}) at step {step}; stopped. "
            f"Last good checkpoint: step {self.ckpts.latest_step()}"
        )

    def _fetch_pending(self) -> list[tuple[int, dict[str, float]]]:
        """The pending step metrics as floats, checked finite."""
        fetched = jax.device_get([m for _, m in self._pending])
        out = []
        for (s, _), m in zip(self._pending, fetched, strict=True):
            for k, v in m.items():
                if not math.isfinite(float(v)):
                    raise self._nonfinite(f"train/{k}", float(v), s)
            out.append((s, {k: float(v) for k, v in m.items()}))
        return out

    def _flush(self, window_s: float) -> None:
        """Fetches pending step metrics, checks them, logs their means."""
        if not self._pending:
            return
        fetched = [m for _, m in self._fetch_pending()]
        last = self._pending[-1][0]
        self.loop["train_time_s"] += window_s
        means = {f"train/{k}": float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
        means["train/images_per_sec"] = len(fetched) * self.config.data.batch_size / max(window_s, 1e-9)
        # The share of the loop's time spent getting batches (read, preprocess, transfer): near 1, input-bound.
        means["train/data_wait_fraction"] = min(1.0, self.train_iter.reset_wait() / max(window_s, 1e-9))
        means["lr"] = float(self.setup.lr_schedule(last - 1)) * optim.plateau_scale(self.state.opt_state)
        if self.writer:
            self.writer.write(last, means)
        self._bar.set_postfix(loss=f"{means['train/loss']:.4f}", img_s=f"{means['train/images_per_sec']:.0f}")
        self._pending.clear()

    def _validate(self, step: int) -> bool:
        """Evaluates on validation, updates best and patience; True for a new best."""
        scalars, _ = self.evaluate("validation")
        for name in self.must_be_finite:
            if not math.isfinite(scalars[name]):
                raise self._nonfinite(f"val/{name}", scalars[name], step)
        logged = {f"val/{k}": v for k, v in scalars.items()}
        es, loop, setup = self.config.early_stopping, self.loop, self.setup
        if self.averaged:
            avg_scalars, _ = self.evaluate("validation", average=True)
            logged.update({f"val_avg/{k}": v for k, v in avg_scalars.items()})
            if es.get("use_average", False):
                scalars = avg_scalars
        value = scalars[setup.select_metric]
        better = selection.record(loop, step, value, setup.select_mode, es.min_delta, es.patience_evals)
        self._plateau(scalars)
        if self.writer:
            self.writer.write(step, logged)
        self._say(f"step {step}/{self.setup.total_steps}  " + "  ".join(f"{k}={v:.4f}" for k, v in logged.items()))
        return better

    def _plateau(self, scalars: dict[str, float]) -> None:
        """Divides the learning rate when ``optim.plateau_metric`` (default: the loss) has not improved for
        ``plateau_patience_evals`` evaluations."""
        oc, name = self.config.optim, self.setup.plateau_metric
        if not oc.get("plateau_factor"):
            return
        value = scalars[name] if self.setup.directions[name] == "min" else -scalars[name]
        min_delta, patience = float(oc.get("plateau_min_delta", 0.0)), int(oc.get("plateau_patience_evals", 1))
        if selection.plateaued(self.loop, value, min_delta, patience):
            scale = optim.plateau_scale(self.state.opt_state) * float(oc.plateau_factor)
            opt_state = optim.set_plateau_scale(self.state.opt_state, scale)
            self.state = sharding.put_replicated(self.state.replace(opt_state=opt_state), self.mesh)
            self._say(f"validation {name} plateaued: learning rate scaled by {scale:g}")

    def train(self) -> None:
        """Steps until the step budget is spent or early stopping fires.

        SIGTERM or SIGINT stops it after the current step, with that step saved:
        :class:`~mlcv.training.interrupts.Interrupted`.
        """
        with self.stops:
            self._steps()

    def _steps(self) -> None:
        setup, loop = self.setup, self.loop
        total, step = setup.total_steps, loop["step"]
        self._bar = tqdm(
            total=total,
            initial=step,
            disable=not (self.is_main and sys.stderr.isatty()),
            dynamic_ncols=True,
            desc="train",
        )
        window_t = time.time()
        while step < total and not loop["stopped_early"]:
            self.state, metrics = self.train_step(self.state, next(self.train_iter))
            step += 1
            self._pending.append((step, metrics))
            self._bar.update(1)
            due = {name for name, when in self.schedule.items() if when(step, total)}
            if "evaluate" in due:  # an evaluation may pick the best step: its state is saved
                due.add("checkpoint")
            if due & {"log", "checkpoint"}:
                # Flushing before a save checks every step since the last one, so
                # no checkpoint ever holds a state that produced a NaN.
                self._flush(time.time() - window_t)
                window_t = time.time()
            # On a signal this step is saved too, with the step metrics not yet logged (checked finite):
            # the resumed run logs them at the next logging step, as an uninterrupted one would.
            if "checkpoint" not in due and self.stops.received is None:
                continue
            if "evaluate" in due:
                self._validate(step)
            loop["step"] = step
            if self.writer:  # a kill then loses no logged record that the checkpoint covers
                self.writer.flush()
            self.ckpts.save(step, self.state, self.train_iter, dict(loop, pending_metrics=self._fetch_pending()))
            window_t = time.time()  # evaluation and saving are not training time
            if self.stops.received is not None:
                break
        self._bar.close()
        self.ckpts.wait()
        self.stops.check(step)  # raises Interrupted once every save is on disk

    def finish(self, t_start: float) -> dict[str, Any]:
        """Evaluates the checkpoint best on validation on validation and test; writes the summary and plots.

        If the best step fails verification, a run that never finished
        evaluates its newest step instead (the state in memory, verified on
        restore) and says so in one line and in the summary; a finished run
        keeps its ``summary.json`` and stops with CheckpointError.
        """
        loop, step, setup = self.loop, self.loop["step"], self.setup
        best_step = loop["best_step"] if loop["best_step"] is not None else self.ckpts.latest_step()
        fallback = {}
        if best_step != step:
            try:
                state, _ = self.ckpts.restore(best_step, self.state)
                self.state = sharding.put_replicated(state, self.mesh)
            except checkpoint.CorruptCheckpoint as e:
                if (self.workdir / "summary.json").exists():
                    raise checkpoint.CheckpointError(f"{e}; the finished run's summary.json is kept") from None
                self._say(f"{e}; evaluating the newest step, {step}, instead")
                fallback = {"checkpoint_fallback": f"best step {best_step}: {e.reason}; evaluated step {step}"}
                best_step = step
        replicas_identical = sharding.check_replicas(self.state.params)
        # config.evaluate_train (learning curves: training against validation error) makes every evaluator report
        # on the training split; else only those that fit on it (DeepFace's weights, from training pairs) pass over it.
        train_too = bool(self.config.get("evaluate_train", False))
        on_train = frozenset(n for n, ev in self.evaluators.items() if train_too or "train" in ev.fit_roles)
        train = self.evaluate("train", fit=True, only=on_train)[0] if on_train else {}
        val, _ = self.evaluate("validation", fit=True)
        test, test_extras = self.evaluate("test")
        extra = {"train": train} if train_too else {}
        if self.averaged:
            extra.update(validation_avg=self.evaluate("validation", True)[0], test_avg=self.evaluate("test", True)[0])
        self.ckpts.close()
        if setup.snapshots:
            members = [runs.load_run(self.workdir, s) for s in setup.snapshots]
            extra["test_snapshot_ensemble"] = runs.evaluate_runs(members, "test")
        metric = setup.task.headline
        # name -> whether it is a percentage: what ablation tables show beside the headline (a detector's AP50)
        also = {m: m in setup.percent for m in setup.task.also_reported if m in test}
        summary = {
            "task": self.config.task,
            "headline": _headline(metric, test.get(metric), metric in setup.percent, best_step),
            "headline_metric": {
                "name": metric,
                "mode": setup.directions.get(metric),
                "percent": metric in setup.percent,
                **({"also": also} if also else {}),
            },
            "step": step,
            "best_step": best_step,
            "selected_on": {"metric": setup.select_metric, "mode": setup.select_mode},
            "stopped_early": loop["stopped_early"],
            **fallback,
            "validation": val,
            "test": test,
            **extra,
            # Non-scalar results of the evaluators (per-class values, matrices, curves).
            **{f"test_{k}": v for k, v in test_extras.items()},
            "compile_time_s": self.compile_s,
            "train_time_s": loop["train_time_s"],
            "train_images_per_sec": step * self.config.data.batch_size / max(loop["train_time_s"], 1e-9),
            "input_pipeline": setup.pipeline,  # config.data.pipeline with "auto" resolved
            "wall_time_s": time.time() - t_start,
            "devices": jax.device_count(),
            "replicas_identical": replicas_identical,
            "processes": jax.process_count(),
        }
        sanity.warn_if_not_learned(summary, setup.task, setup.directions, self._say)
        if self.is_main:
            self.writer.close()
            plots = self.workdir / "plots"
            records = report.read_metrics(self.workdir / "metrics.jsonl")
            report.plot_schedules(
                setup.total_steps,
                {"lr": setup.lr_schedule, "momentum": setup.momentum_schedule},
                plots / "schedule.png",
            )
            for name in dict.fromkeys(["loss", *setup.directions]):
                report.plot_curves(records, name, plots / f"{name}.png")
            for ev in self.evaluators.values():
                ev.plot(test_extras, plots, "test")
            workdirs.write_json(self.workdir / "summary.json", summary)
        return summary


def _headline(metric: str, value: float | None, percent: bool, best_step: int) -> str:
    """The run's one-line result: the task's headline metric on test."""
    shown = "n/a" if value is None else (f"{100 * value:.2f} %" if percent else f"{value:.4f}")
    return f"test {metric} {shown} (best step {best_step})"

"""The one generic training loop.

``run(config, workdir)`` validates the config, trains with periodic
validation, early stopping and asynchronous checkpoints, and ends by
evaluating the checkpoint that was best on validation on the test split,
once. Re-running the same command on the same workdir resumes from the
newest complete checkpoint and reaches the same final numbers.
"""

from __future__ import annotations

import json
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

from mlcv import checkpoint, data, models, optim, report, sharding, tasks
from mlcv import config as config_lib
from mlcv.config import ConfigError
from mlcv.data import ops as ops_lib
from mlcv.data import pipeline


class NonFiniteError(RuntimeError):
    """Training produced a NaN or infinity; the message names step and metric."""


def _split(config: ml_collections.ConfigDict, spec: data.DatasetSpec, role: str) -> str:
    return config.data.get(f"{role}_split") or spec.splits[role]


class _Setup:
    """Everything built from the config before any file is written."""

    def __init__(self, config: ml_collections.ConfigDict):
        dc = config.data
        self.spec = data.get(dc.name)
        kw = {"data_dir": dc.get("data_dir"), "download": bool(dc.get("download", True))}
        self.sources = {
            role: data.source(self.spec, _split(config, self.spec, role), **kw)
            for role in ("train", "validation", "test")
        }
        for pp_key in ("pp_train", "pp_eval"):
            try:
                ops_lib.parse(dc[pp_key], self.spec.op_defaults)
            except ValueError as e:
                raise ConfigError(f"config.data.{pp_key}: {e}") from None
        self.num_classes = data.num_classes(self.sources["train"])
        model_kwargs = {k: v for k, v in config.model.items() if k != "name"}
        self.model = models.get(config.model.name, num_classes=self.num_classes, **model_kwargs)
        self.task = tasks.get(config.task)(config, self.model, self.num_classes)
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
        self.tx = optim.make(config.optim, self.total_steps)
        self.lr_schedule = optim.schedule(config.optim, self.total_steps)
        es = config.early_stopping
        if es.mode not in ("max", "min"):
            raise ConfigError(f"config.early_stopping.mode must be 'max' or 'min', not {es.mode!r}")


def _check_workdir_config(workdir: Path, config: ml_collections.ConfigDict) -> None:
    path = workdir / "config.json"
    if not path.exists():
        return
    old, new = json.loads(path.read_text()), json.loads(config.to_json_best_effort())
    if old != new:
        diff = sorted(k for k in set(_flat(old)) | set(_flat(new)) if _flat(old).get(k) != _flat(new).get(k))
        raise ConfigError(
            f"workdir {workdir} holds a run of a different config (keys {', '.join(diff)}); "
            "use another --workdir or remove it"
        )


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _write_json(path: Path, obj: Any) -> None:
    # Write-then-rename, so a kill never leaves a half-written file behind.
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    os.replace(tmp, path)


def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> dict[str, Any]:
    """Trains and evaluates the experiment ``config`` in ``workdir``.

    Returns the contents of ``summary.json``.

    Raises:
      ConfigError: the config names something missing or holds a bad value;
        raised before anything is written to ``workdir``.
      NonFiniteError: the loss became NaN or infinite; the newest checkpoint
        on disk is the last good one.
    """
    t_start = time.time()
    setup = _Setup(config)
    workdir = Path(workdir)
    _check_workdir_config(workdir, config)
    is_main = jax.process_index() == 0
    if is_main:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2, sort_keys=True))

    mesh = sharding.data_mesh()
    dc = config.data
    loader = pipeline.train_loader(
        setup.sources["train"],
        batch_size=dc.batch_size,
        pp=dc.pp_train,
        op_defaults=setup.spec.op_defaults,
        keys=setup.task.batch_keys,
        seed=config.seed,
        worker_count=dc.worker_count,
    )
    train_iter = iter(loader)
    local_train = dc.batch_size // jax.process_count()
    local_eval = dc.eval_batch_size // jax.process_count()
    example = pipeline.example_batch(
        setup.sources["train"],
        size=local_train,
        pp=dc.pp_train,
        op_defaults=setup.spec.op_defaults,
        keys=setup.task.batch_keys,
    )
    state = setup.task.init(jax.random.PRNGKey(config.seed), example, setup.tx)
    state = sharding.put_replicated(state, mesh)
    ckpts = checkpoint.Checkpoints(workdir / "checkpoints", keep=config.checkpoint.keep)
    loop = {
        "step": 0,
        "best_value": None,
        "best_step": None,
        "best_rank": -1,
        "bad_evals": 0,
        "stopped_early": False,
        "train_time_s": 0.0,
    }
    writer = report.MetricWriter(workdir, tensorboard=config.tensorboard) if is_main else None
    start = ckpts.latest_step()
    if start is not None:
        state, loop = ckpts.restore(start, state, train_iter)
        state = sharding.put_replicated(state, mesh)
        if is_main:
            print(f"resumed from step {start} of {workdir}", file=sys.stderr)
        if writer:
            writer.truncate_after(start)

    repl = sharding.replicated(mesh)
    data_sh = sharding.batch_sharded(mesh)
    t0 = time.time()
    train_step = (
        jax.jit(setup.task.train_step, in_shardings=(repl, data_sh), out_shardings=(repl, repl), donate_argnums=0)
        .lower(state, sharding.put_batch(example, mesh))
        .compile()
    )
    eval_example = pipeline.example_batch(
        setup.sources["validation"],
        size=local_eval,
        pp=dc.pp_eval,
        op_defaults=setup.spec.op_defaults,
        keys=setup.task.batch_keys,
    )
    eval_step = (
        jax.jit(setup.task.eval_step, in_shardings=(repl, data_sh), out_shardings=repl)
        .lower(state, sharding.put_batch(pipeline.pad_batch(eval_example, local_eval), mesh))
        .compile()
    )
    compile_s = time.time() - t0

    def evaluate(st, role: str) -> tuple[dict[str, float], dict[str, Any]]:
        batches = pipeline.eval_batches(
            setup.sources[role],
            batch_size=dc.eval_batch_size,
            pp=dc.pp_eval,
            op_defaults=setup.spec.op_defaults,
            keys=setup.task.batch_keys,
        )
        sums = [eval_step(st, sharding.put_batch(b, mesh)) for b in batches]
        return setup.task.summarize(jax.device_get(sums))

    es = config.early_stopping
    total, step = setup.total_steps, loop["step"]
    pending: list[tuple[int, dict[str, jax.Array]]] = []
    bar = tqdm(
        total=total, initial=step, disable=not (is_main and sys.stderr.isatty()), dynamic_ncols=True, desc="train"
    )
    window_t, window_steps = time.time(), 0

    def flush() -> None:
        """Fetches pending step metrics, checks them, logs their means."""
        nonlocal window_t, window_steps
        if not pending:
            return
        fetched = jax.device_get([m for _, m in pending])
        for (s, _), m in zip(pending, fetched, strict=False):
            for k, v in m.items():
                if not math.isfinite(float(v)):
                    ckpts.wait()
                    raise NonFiniteError(
                        f"non-finite train/{k} ({float(v)}) at step {s}; stopped. "
                        f"Last good checkpoint: step {ckpts.latest_step()}"
                    )
        dt = time.time() - window_t
        loop["train_time_s"] += dt
        means = {f"train/{k}": float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
        means["train/images_per_sec"] = window_steps * dc.batch_size / max(dt, 1e-9)
        means["lr"] = float(setup.lr_schedule(pending[-1][0] - 1))
        if writer:
            writer.write(pending[-1][0], means)
        bar.set_postfix(loss=f"{means['train/loss']:.4f}", img_s=f"{means['train/images_per_sec']:.0f}")
        pending.clear()
        window_t, window_steps = time.time(), 0

    while step < total and not loop["stopped_early"]:
        batch = sharding.put_batch(next(train_iter), mesh)
        state, m = train_step(state, batch)
        step += 1
        window_steps += 1
        pending.append((step, m))
        bar.update(1)
        is_eval = step % setup.eval_every == 0 or step == total
        if step % setup.log_every == 0 or is_eval:
            flush()
        if not is_eval:
            continue
        scalars, _ = evaluate(state, "validation")
        if not math.isfinite(scalars["loss"]):
            ckpts.wait()
            raise NonFiniteError(
                f"non-finite val/loss at step {step}; stopped. Last good checkpoint: step {ckpts.latest_step()}"
            )
        value = scalars[es.metric]
        better = loop["best_value"] is None or (
            value > loop["best_value"] + es.min_delta if es.mode == "max" else value < loop["best_value"] - es.min_delta
        )
        if better:
            loop.update(best_value=value, best_step=step, best_rank=loop["best_rank"] + 1, bad_evals=0)
        else:
            loop["bad_evals"] += 1
        if es.patience_evals and loop["bad_evals"] >= es.patience_evals:
            loop["stopped_early"] = True
        loop["step"] = step
        if writer:
            writer.write(step, {f"val/{k}": v for k, v in scalars.items()})
        if is_main:
            tqdm.write(
                f"step {step}/{total}  val " + "  ".join(f"{k}={v:.4f}" for k, v in scalars.items()), file=sys.stderr
            )
        ckpts.save(step, state, train_iter, dict(loop), best_rank=loop["best_rank"] if better else -1)
        window_t = time.time()  # evaluation time does not count as training time
    bar.close()
    ckpts.wait()

    best_step = loop["best_step"] if loop["best_step"] is not None else ckpts.latest_step()
    if best_step != step:
        state, _ = ckpts.restore(best_step, state)
        state = sharding.put_replicated(state, mesh)
    val, _ = evaluate(state, "validation")
    test, test_extras = evaluate(state, "test")
    ckpts.close()
    summary = {
        "step": step,
        "best_step": best_step,
        "stopped_early": loop["stopped_early"],
        "validation": val,
        "test": test,
        "test_per_class_accuracy": test_extras.get("per_class_accuracy"),
        "test_confusion_matrix": test_extras.get("confusion_matrix"),
        "compile_time_s": compile_s,
        "train_time_s": loop["train_time_s"],
        "train_images_per_sec": step * dc.batch_size / max(loop["train_time_s"], 1e-9),
        "wall_time_s": time.time() - t_start,
        "devices": jax.device_count(),
        "processes": jax.process_count(),
    }
    if is_main:
        writer.close()
        records = report.read_metrics(workdir / "metrics.jsonl")
        for metric in ("loss", "accuracy"):
            report.plot_curves(records, metric, workdir / "plots" / f"{metric}.png")
        if "confusion_matrix" in test_extras:
            report.plot_confusion(test_extras["confusion_matrix"], workdir / "plots" / "confusion_test.png", "test")
        _write_json(workdir / "summary.json", summary)
    return summary

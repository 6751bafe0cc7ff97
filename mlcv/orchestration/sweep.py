"""Hyper-parameter sweeps: expand a grid or random search into trials, run or shard them, collect results.

An experiment file declares its sweep beside its config::

    def get_sweep(arg=None):
        return {"type": "grid", "params": {"optim.lr": [1e-3, 3e-3], "seed": [0, 1, 2]}}

or a random search::

    {"type": "random", "num_trials": 8, "seed": 0,
     "params": {"optim.lr": ("log_uniform", 1e-4, 1e-1), "model.dropout": ("uniform", 0.0, 0.5),
                "model.convs_per_stage": ("int_uniform", 1, 3), "optim.name": ("choice", ["sgd", "adam"])},
     "repeat": {"seed": [0, 1, 2]}, "metric": "loss", "mode": "min"}

A grid is the cartesian product of ``params`` in the listed order, the first
key outermost. A random search makes ``num_trials`` draws from a generator
seeded by the sweep's ``seed``; drawn floats keep 4 significant digits, so
names and tables stay readable. ``repeat`` values are crossed with every grid
point or draw, innermost. Repeat keys (those of ``repeat``, and ``seed``
wherever it is swept) are what the grouped table averages over. ``metric``
and ``mode`` choose the best trial or group on validation; they default to
the config's ``early_stopping`` metric and mode. Identical trials run once.

A sweep workdir holds ``sweep.json`` (the trial list), one training workdir
per trial named by :func:`trial_name`, and what
:func:`mlcv.orchestration.sweep_table.collect` writes: ``sweep.csv``, ``sweep.md`` and
``plots/sweep_<key>.png``.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import itertools
import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

import mlcv
from mlcv import workdirs
from mlcv.config import ConfigError
from mlcv.orchestration.sweep_table import DIVERGED, collect, status
from mlcv.report import tables
from mlcv.training.loop import NonFiniteError

DISTRIBUTIONS = ("choice", "int_uniform", "log_uniform", "uniform")
_KEYS = {"grid": {"type", "params", "repeat", "metric", "mode"}}
_KEYS["random"] = _KEYS["grid"] | {"num_trials", "seed"}
_SIG_DIGITS = 4
_MAX_NAME = 100  # far below the 255 bytes of a file name, so paths stay readable
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def _values(where: str, values: Any) -> None:
    if not isinstance(values, (list, tuple)) or not values:
        raise ConfigError(f"{where} needs a non-empty list of values, not {values!r}")


def _distribution(key: str, spec: Any) -> None:
    where = f"sweep param {key!r}"
    if not isinstance(spec, (list, tuple)) or not spec or not isinstance(spec[0], str):
        raise ConfigError(f"{where}: a random sweep needs (distribution, *args), e.g. ('log_uniform', 1e-4, 1e-1)")
    dist, args = spec[0], spec[1:]
    if dist not in DISTRIBUTIONS:
        raise ConfigError(f"{where}: unknown distribution {dist!r}; valid: {', '.join(DISTRIBUTIONS)}")
    if dist == "choice":
        if len(args) != 1:
            raise ConfigError(f"{where}: write ('choice', [value, ...])")
        return _values(where, args[0])
    if len(args) != 2 or not all(tables.is_number(a) for a in args):
        raise ConfigError(f"{where}: write ({dist!r}, low, high) with two numbers")
    lo, hi = args
    if dist == "int_uniform" and not (isinstance(lo, int) and isinstance(hi, int) and lo <= hi):
        raise ConfigError(f"{where}: int_uniform needs integers low <= high, not {lo!r}, {hi!r}")
    if dist != "int_uniform" and not lo < hi:
        raise ConfigError(f"{where}: needs low < high, not {lo!r}, {hi!r}")
    if dist == "log_uniform" and lo <= 0:
        raise ConfigError(f"{where}: log_uniform needs 0 < low, not {lo!r}")


def check(sweep: Mapping[str, Any]) -> None:
    """Checks the form of a sweep dict; raises ConfigError naming the offending key."""
    if not isinstance(sweep, Mapping):
        raise ConfigError(f"get_sweep() must return a dict, not {type(sweep).__name__}")
    kind = sweep.get("type")
    if kind not in _KEYS:
        raise ConfigError(f"sweep type {kind!r} is unknown; valid types: grid, random")
    unknown = sorted(set(sweep) - _KEYS[kind])
    if unknown:
        raise ConfigError(
            f"unknown sweep key {unknown[0]!r} for a {kind} sweep; valid: {', '.join(sorted(_KEYS[kind]))}"
        )
    params, repeat = sweep.get("params"), sweep.get("repeat", {})
    if not isinstance(params, Mapping) or not params:
        raise ConfigError("sweep 'params' needs a non-empty dict of config key -> values")
    if not isinstance(repeat, Mapping):
        raise ConfigError("sweep 'repeat' needs a dict of config key -> values")
    for key, spec in params.items():
        _values(f"sweep param {key!r}", spec) if kind == "grid" else _distribution(key, spec)
    for key, values in repeat.items():
        _values(f"sweep repeat {key!r}", values)
        if key in params:
            raise ConfigError(f"sweep key {key!r} is both in 'params' and in 'repeat'")
    if kind == "random":
        n, seed = sweep.get("num_trials"), sweep.get("seed", 0)
        if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
            raise ConfigError(f"sweep 'num_trials' needs a positive integer, not {n!r}")
        if not (isinstance(seed, int) and not isinstance(seed, bool)):
            raise ConfigError(f"sweep 'seed' needs an integer, not {seed!r}")
    if not isinstance(sweep.get("metric", ""), str):
        raise ConfigError(f"sweep 'metric' needs a metric name, not {sweep['metric']!r}")
    if sweep.get("mode", "max") not in ("max", "min"):
        raise ConfigError(f"sweep 'mode' must be 'max' or 'min', not {sweep['mode']!r}")


def _draw(rng: np.random.Generator, spec: Sequence[Any]) -> Any:
    dist, *args = spec
    if dist == "choice":
        return args[0][int(rng.integers(len(args[0])))]
    lo, hi = args
    if dist == "int_uniform":
        return int(rng.integers(lo, hi + 1))
    x = math.exp(rng.uniform(math.log(lo), math.log(hi))) if dist == "log_uniform" else rng.uniform(lo, hi)
    return float(min(max(float(f"{x:.{_SIG_DIGITS}g}"), lo), hi))  # the rounding must not leave the range


def trials(sweep: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The overrides of every trial, in order: grid points or draws, each crossed with the repeats."""
    check(sweep)
    params = dict(sweep["params"])
    if sweep["type"] == "grid":
        points = [dict(zip(params, combo, strict=True)) for combo in itertools.product(*params.values())]
    else:
        rng = np.random.default_rng(sweep.get("seed", 0))
        points = [{k: _draw(rng, spec) for k, spec in params.items()} for _ in range(sweep["num_trials"])]
    repeat = dict(sweep.get("repeat") or {})
    repeats = [dict(zip(repeat, combo, strict=True)) for combo in itertools.product(*repeat.values())]
    out, seen = [], set()
    for point in points:
        for rep in repeats:
            overrides = {**point, **rep}
            name = trial_name(overrides)
            if name not in seen:  # one workdir per name: a repeated draw would only be skipped
                seen.add(name)
                out.append(overrides)
    return out


def repeat_keys(sweep: Mapping[str, Any]) -> list[str]:
    """The swept keys that repeat a trial rather than change it: ``repeat``'s keys, and ``seed``."""
    keys = list(sweep.get("repeat") or {})
    return keys + ["seed"] if "seed" in sweep["params"] else keys


def _name_part(value: Any) -> tuple[str, bool]:
    """The file-name text of one value, and whether that text is exact."""
    if isinstance(value, (list, tuple)):
        return "-".join(_name_part(v)[0] for v in value), False
    text = repr(value) if isinstance(value, float) else str(value)
    safe = _UNSAFE.sub("_", text)
    return safe, safe == text


def trial_name(overrides: Mapping[str, Any]) -> str:
    """A stable, readable, file-system-safe name: ``optim.lr=0.003,seed=1``.

    A name that had to lose characters (tuples, strings with ``/`` or spaces)
    or is longer than 100 characters ends in ``~`` and a hash of the exact
    overrides, so distinct trials never share a workdir.
    """
    parts = {k: _name_part(v) for k, v in overrides.items()}
    name = ",".join(f"{_UNSAFE.sub('_', k)}={text}" for k, (text, _) in parts.items()) or "base"
    if all(exact for _, exact in parts.values()) and len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha1(repr(list(overrides.items())).encode()).hexdigest()[:8]
    return f"{name[: _MAX_NAME - 9]}~{digest}"


def _leaf_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    out = []
    for k, v in config.items():
        out += _leaf_keys(v, f"{prefix}{k}.") if isinstance(v, ml_collections.ConfigDict) else [f"{prefix}{k}"]
    return out


def _plain(value: Any) -> Any:
    # A numpy scalar would change the type of a locked config field to numpy's.
    return value.item() if isinstance(value, np.generic) else value


def apply(config: ml_collections.ConfigDict, overrides: Mapping[str, Any]) -> ml_collections.ConfigDict:
    """A copy of ``config`` with ``overrides`` set through the config's own type checks.

    A key that names a whole section (``model``) takes a mapping, which replaces the section: the rows of
    an ablation that compares detectors change the model, the task and its options together, and a
    section's keys differ from one model to the next.

    Raises:
      ConfigError: a key is not in the config, names a whole section with a value that is not a
        mapping, or its value has the wrong type; the message names the key.
    """
    out = copy.deepcopy(config)
    for key, value in overrides.items():
        *path, leaf = key.split(".")
        node = out
        for part in [*path, leaf]:
            if not isinstance(node, ml_collections.ConfigDict) or part not in node:
                close = difflib.get_close_matches(key, _leaf_keys(config), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"sweep key {key!r} is not in the config{hint}")
            parent, node = node, node[part]
        if isinstance(node, ml_collections.ConfigDict):
            if not isinstance(value, Mapping):
                raise ConfigError(f"sweep key {key!r} names a section of the config; give it a mapping, not {value!r}")
            parent[leaf] = ml_collections.ConfigDict(copy.deepcopy(dict(value)))
            continue
        try:
            setattr(parent, leaf, _plain(value))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"sweep key {key!r}: {e}") from None
    return out


def shard_of(items: Sequence[Any], shard: tuple[int, int]) -> list[Any]:
    """Every n-th item from the i-th on, for ``shard=(i, n)``; shards 0..n-1 partition ``items``."""
    i, n = shard
    if not (isinstance(i, int) and isinstance(n, int) and 0 <= i < n):
        raise ConfigError(f"sweep shard {i}/{n} must satisfy 0 <= i < n")
    return list(items[i::n])


def _say(line: str) -> None:
    if jax.process_index() == 0:
        print(line, file=sys.stderr, flush=True)


def _headline(config: ml_collections.ConfigDict) -> str:
    """The headline metric of the config's task, which a sweep selects on unless told otherwise."""
    from mlcv import tasks

    return tasks.get(config.task).headline


def run(
    config: ml_collections.ConfigDict,
    sweep: Mapping[str, Any],
    workdir: str | Path,
    shard: tuple[int, int] = (0, 1),
) -> list[dict[str, Any]]:
    """Runs the trials of ``shard`` that are not finished yet, then :func:`collect` s the workdir.

    Every trial config is built and checked, and every existing trial workdir
    of the shard compared with its config, before the first trial runs. A
    trial with a complete summary.json is skipped; one cut short resumes
    through :func:`mlcv.training.loop.run`'s own resume; one whose loss goes
    non-finite is marked diverged and the sweep goes on.

    Returns one record per trial of the shard: name, overrides, status,
    ``ran`` (whether it trained now) and its summary (None unless complete).

    Raises:
      ConfigError: a malformed sweep, a key not in the config, a value of the
        wrong type, or a trial workdir of another config; nothing is written.
    """
    workdir = Path(workdir)
    all_trials = trials(sweep)
    names = [trial_name(t) for t in all_trials]
    configs = [apply(config, t) for t in all_trials]
    mine = shard_of(range(len(all_trials)), shard)
    for i in mine:
        workdirs.check_config(workdir / names[i], configs[i])
    log_keys = [k for k, s in sweep["params"].items() if sweep["type"] == "random" and s[0] == "log_uniform"]
    meta = {
        "trials": [{"name": n, "overrides": t} for n, t in zip(names, all_trials, strict=True)],
        "keys": [*sweep["params"], *(sweep.get("repeat") or {})],
        "repeat_keys": repeat_keys(sweep),
        "log_keys": log_keys,
        "metric": sweep.get("metric") or config.early_stopping.get("metric") or _headline(config),
        "mode": sweep.get("mode") or config.early_stopping.mode,
    }
    is_main = jax.process_index() == 0
    if is_main:
        tables.write_text(workdir / "sweep.json", json.dumps(meta, indent=2, default=repr) + "\n")
    records = []
    for pos, i in enumerate(mine, 1):
        trial_dir, before = workdir / names[i], status(workdir / names[i])
        where = f"trial {i + 1}/{len(all_trials)} ({pos}/{len(mine)} of shard {shard[0]}/{shard[1]}) {names[i]}"
        _say(f"sweep: {where}" + ("" if before == "pending" else f": {before}, skipped"))
        if before == "pending":
            try:
                mlcv.run(configs[i], trial_dir)
            except NonFiniteError as e:
                _say(f"sweep: {names[i]} diverged: {e}")
                if is_main:
                    tables.write_text(trial_dir / DIVERGED, f"{e}\n")
        after = status(trial_dir)
        summary = json.loads((trial_dir / "summary.json").read_text()) if after == "complete" else None
        record = {"name": names[i], "overrides": all_trials[i], "status": after, "ran": before == "pending"}
        records.append({**record, "summary": summary})
    if is_main:
        collect(workdir)
    return records

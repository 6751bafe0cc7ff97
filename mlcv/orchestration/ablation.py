"""Paper-style ablations: named variants of one base config, each over several seeds, in one table.

An ablation is a list of rows. A ``train`` row runs its overrides once per
seed (``<workdir>/<row id>/seed=<s>``) and reports the mean ± std over seeds of
the task's headline metric on test (``summary.json``'s ``headline_metric``) of
each run's checkpoint chosen on validation, and of the metrics the task reports
beside it (``Task.also_reported``: a detector's AP50 and AP75). Other rows
read runs that exist already, so no model is trained twice:

- ``average``: the averaged (EMA) parameters of another row's runs;
- ``snapshot``: the snapshot ensemble of another row's runs;
- ``ensemble``: ensembles of ``size`` runs of another row, consecutive seeds
  per ensemble, one ensemble per repeat;
- ``evaluate``: another row's runs evaluated again on test with ``overrides``
  that change only inference (a detector's NMS threshold, its score
  threshold): the checkpoint each run chose, its config with the overrides,
  the task rebuilt from it, as soon as that run is complete. The metrics go
  to ``<workdir>/<row id>/seed=<s>/evaluation.json``, written once.

A value ``RunsOf(row, seeds)`` in a row's overrides becomes the tuple of
that row's workdirs, so a distilled student can name its teachers. Rows run
in order; a finished run is skipped, so an interrupted ablation resumes.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections

import mlcv
from mlcv import workdirs
from mlcv.config import ConfigError
from mlcv.orchestration import sweep, sweep_table
from mlcv.report import plots, tables
from mlcv.training import runs


@dataclasses.dataclass(frozen=True)
class RunsOf:
    """Stands for the workdirs of ``row``'s runs with ``seeds`` (e.g. distillation teachers)."""

    row: str
    seeds: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Row:
    """One row of the table.

    Attributes:
      id: a short file-system-safe name, unique in the ablation.
      group: the block of the table the row belongs to ("optimizer", ...).
      title: what the row shows ("SGD, lr 0.1").
      overrides: config overrides of a ``train`` row.
      seeds: the seeds of a ``train`` row, or how many repeats another row reports.
      kind: ``train``, ``average``, ``snapshot``, ``ensemble`` or ``evaluate``.
      source: the row whose runs an ``average``/``snapshot``/``ensemble``/``evaluate`` row reads.
      size: members per ensemble of an ``ensemble`` row.
    """

    id: str
    group: str
    title: str
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    seeds: tuple[int, ...] = (0, 1, 2)
    kind: str = "train"
    source: str = ""
    size: int = 0


KINDS = ("train", "average", "snapshot", "ensemble", "evaluate")


def check(rows: Sequence[Row], config: ml_collections.ConfigDict) -> None:
    """Refuses unknown kinds, duplicate ids, dangling sources and overrides the config lacks, before any run."""
    ids = [r.id for r in rows]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"ablation row ids repeat: {sorted(i for i in ids if ids.count(i) > 1)}")
    by_id = {r.id: r for r in rows}
    for r in rows:
        if r.kind not in KINDS:
            raise ConfigError(f"ablation row {r.id!r}: unknown kind {r.kind!r}; valid: {', '.join(KINDS)}")
        if r.kind != "train" and (r.source not in by_id or by_id[r.source].kind != "train"):
            raise ConfigError(f"ablation row {r.id!r} reads row {r.source!r}, which is not a train row")
        if r.kind == "ensemble" and len(by_id[r.source].seeds) < r.size * len(r.seeds):
            raise ConfigError(f"ablation row {r.id!r} needs {r.size * len(r.seeds)} runs of {r.source!r}")
        if r.kind == "evaluate" and not set(r.seeds) <= set(by_id[r.source].seeds):
            raise ConfigError(f"ablation row {r.id!r} evaluates seeds {r.seeds} that {r.source!r} does not train")
        base = config
        if r.kind == "evaluate":  # its overrides apply to the config its source row trained
            base = sweep.apply(
                config, {k: v for k, v in by_id[r.source].overrides.items() if not isinstance(v, RunsOf)}
            )
        sweep.apply(base, {k: v for k, v in r.overrides.items() if not isinstance(v, RunsOf)})


def run_dir(workdir: Path, row: str, seed: int) -> Path:
    """Where the run of ``row`` with ``seed`` lives."""
    return Path(workdir) / row / f"seed={seed}"


def run(config: ml_collections.ConfigDict, rows: Sequence[Row], workdir: str | Path) -> list[list[Any]]:
    """Runs every missing run of the ``train`` rows, then writes ``ablation.md`` / ``.csv`` / ``.png``; after each
    run it trains it writes them too, from the runs complete so far (rows with none blank, the count in the note).

    Returns the table rows: group, title, runs, the headline metric on test (mean ± std), mean wall time.
    """
    workdir = Path(workdir)
    check(rows, config)
    runs = []
    for r in rows:
        if r.kind != "train":
            continue
        overrides = {k: _resolve(v, workdir) for k, v in r.overrides.items()}
        for seed in r.seeds:
            out = run_dir(workdir, r.id, seed)
            run_config = sweep.apply(config, {**overrides, "seed": seed})
            # A finished run counts only if it ran this very config (the base may have changed since).
            workdirs.check_config(out, run_config)
            runs.append((r.id, seed, run_config, out))
    # An evaluate row runs as soon as the run it reads is complete, so that run's checkpoint is needed only until
    # then: an ablation too long for one sitting can go on elsewhere from its finished runs' JSON files.
    evaluations: dict[tuple[str, int], list[Row]] = {}
    for r in rows:
        if r.kind == "evaluate":
            for seed in r.seeds:
                evaluations.setdefault((r.source, seed), []).append(r)
    for row_id, seed, run_config, out in runs:
        trained = sweep_table.status(out) != "complete"
        if trained:
            print(f"ablation: {row_id} seed {seed}", file=sys.stderr, flush=True)
            mlcv.run(run_config, out)
        for r in evaluations.get((row_id, seed), []):
            _evaluate(r, seed, workdir)
        if trained:  # the table so far: a long ablation shows its progress, and what a stop leaves is readable
            _write(rows, workdir)
    return _write(rows, workdir)


def _write(rows: Sequence[Row], workdir: Path) -> list[list[Any]]:
    """Writes ``ablation.md`` / ``.csv`` / ``.png`` from the runs complete now; returns the table rows."""
    table, stats, metrics = _table(rows, workdir)
    if jax.process_index() == 0:
        header = ["group", "row", "runs", *(f"test {m}" for m in metrics), "wall time a run (s)"]
        md = tables.markdown_table(header, table, align="llr" + "r" * len(metrics) + "r")
        total = sum(len(r.seeds) for r in rows if r.kind == "train")
        done = [s for r in rows if r.kind == "train" for s in _summaries(workdir, r, _complete(workdir, r))]
        compute = sum(s["wall_time_s"] for s in done)
        count = f"{total}" if len(done) == total else f"{len(done)} of {total}"
        note = (
            f"\n\n{count} training runs; the sum of their wall times is {compute:.0f} s. Mean ± sample std over the "
            "runs (or ensembles) of each row.\n"
        )
        if len(done) < total:
            note += "Not finished: a row's runs column counts its complete runs; rows with none are blank.\n"
        tables.write_text(workdir / "ablation.md", md + note)
        tables.write_text(
            workdir / "ablation.csv", tables.csv_text([dict(zip(header, row, strict=True)) for row in table], header)
        )
        if stats:
            plots.plot_ablation(stats, workdir / "ablation.png", f"test {metrics[0]}, mean ± std")
    return table


def _evaluate(row: Row, seed: int, workdir: Path) -> None:
    """Evaluates the run of ``row.source`` with ``seed`` again with ``row.overrides``, once."""
    out = run_dir(workdir, row.id, seed) / "evaluation.json"
    if out.is_file():
        return
    print(f"ablation: {row.id} seed {seed} (evaluates {row.source})", file=sys.stderr, flush=True)
    start = time.time()
    run = runs.load_run(run_dir(workdir, row.source, seed))
    config = sweep.apply(run.config, row.overrides)
    evaluated = runs.Run(run.workdir, run.step, config, runs.build_task(config, run.task.meta), run.variables)
    metrics = runs.evaluate_runs([evaluated], "test")["members"][0]
    if jax.process_index() == 0:
        record = {"test": metrics, "overrides": dict(row.overrides), "wall_time_s": time.time() - start}
        tables.write_text(out, json.dumps(record, indent=2, default=str))


def _resolve(value: Any, workdir: Path) -> Any:
    if isinstance(value, RunsOf):
        return tuple(str(run_dir(workdir, value.row, s)) for s in value.seeds)
    return value


def _summaries(workdir: Path, row: Row, seeds: Sequence[int] | None = None) -> list[dict[str, Any]]:
    seeds = row.seeds if seeds is None else seeds
    return [json.loads((run_dir(workdir, row.id, s) / "summary.json").read_text()) for s in seeds]


def _complete(workdir: Path, row: Row) -> list[int]:
    """The seeds of a train row whose runs are complete."""
    return [s for s in row.seeds if sweep_table.status(run_dir(workdir, row.id, s)) == "complete"]


def _table(
    rows: Sequence[Row], workdir: Path
) -> tuple[list[list[Any]], list[tuple[str, float, float | None]], list[str]]:
    """The table rows, (title, mean, std) of the headline per row for the plot, and the metric columns' names.

    The columns are the task's headline metric, then the metrics it reports beside it (``headline_metric``'s
    ``also``: AP50 and AP75 for a detector); an ensemble row shows the headline only.
    """
    by_id = {r.id: r for r in rows}
    complete = {r.id: _complete(workdir, r) for r in rows if r.kind == "train"}
    first = next((_summaries(workdir, r, seeds[:1])[0] for r in rows if (seeds := complete.get(r.id))), None)
    if first is None:
        return [[r.group, r.title, 0, ""] for r in rows], [], []
    headline = first["headline_metric"]
    # name -> is a percentage; the headline first
    metrics = {headline["name"]: headline["percent"], **headline.get("also", {})}
    out, stats = [], []
    for r in rows:
        src = by_id.get(r.source, r)
        done = complete[src.id]
        if r.kind == "evaluate":
            done = [s for s in r.seeds if (run_dir(workdir, r.id, s) / "evaluation.json").is_file()]
        elif r.kind != "train" and len(done) < len(src.seeds):
            done = []  # a row of another row's runs waits for all of them
        if not done:
            out.append([r.group, r.title, 0, *([""] * len(metrics)), ""])
            continue
        sums = _summaries(workdir, src, complete[src.id])
        wall = sum(s["wall_time_s"] for s in sums) / len(sums)
        if r.kind == "train":
            tests = [s["test"] for s in sums]
        elif r.kind == "evaluate":
            evals = [json.loads((run_dir(workdir, r.id, s) / "evaluation.json").read_text()) for s in done]
            tests = [e["test"] for e in evals]
            wall = sum(e["wall_time_s"] for e in evals) / len(evals)  # inference only: no training
        elif r.kind == "average":
            tests = [s["test_avg"] for s in sums]
        elif r.kind == "snapshot":
            tests = [s["test_snapshot_ensemble"]["ensemble"] for s in sums]
        else:
            tests = []
            for i in range(len(r.seeds)):
                seeds = src.seeds[i * r.size : (i + 1) * r.size]
                members = [runs.load_run(run_dir(workdir, src.id, s)) for s in seeds]
                tests.append(runs.evaluate_runs(members, "test")["ensemble"])
            wall *= r.size  # an ensemble costs its members' training
        n = len(tests) if r.kind != "ensemble" else f"{len(tests)} x {r.size}"
        cells = []
        for name, percent in metrics.items():
            values = [t[name] for t in tests if t.get(name) is not None]
            shown = [100 * v for v in values] if percent else values
            cells.append(tables.format_mean_std(shown, 2 if percent else 4) if shown else "")
            if name == headline["name"]:
                stats.append((f"{r.group}: {r.title.strip()}", *tables.mean_std(shown)))
        out.append([r.group, r.title, n, *cells, f"{wall:.0f}"])
    return out, stats, [f"{m} (%)" if p else m for m, p in metrics.items()]

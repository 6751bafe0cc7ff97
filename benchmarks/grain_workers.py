"""Records/s of mlcv's training loader against its number of grain worker processes, on two per-record paths.

Run:
  .venv/bin/python benchmarks/grain_workers.py [--workers 0 1 2 4] [--repeats 5] [--digits-batches 100]
      [--scenes-batches 40]

``mlcv.data.pipeline.train_loader`` as the training loop builds it (``_Trainer.__init__``: the split of
``RunSetup(config).sources``, the config's ``pp_train`` and batch size, the dataset's ``op_defaults``, the
task's ``batch_keys`` and ``train_range_checks()``, seed 0), with ``worker_count`` grain worker processes (0
reads and preprocesses in the calling thread), on:

- digits, the default experiment's config (experiments/digits_cnn.py): 8x8x1 records,
  ``random_crop(8, pad=1)|normalize``, batches of 64: ~0.2 ms of CPU a record, most of it grain's per-record machinery;
- digit scenes, the detectors' config (experiments/scenes_retinanet.py, ``defaults.scenes_detector``):
  96x96x3 records with boxes and zlib-compressed masks that TFDS decodes,
  ``keep('image', 'boxes', 'box_labels')|random_scale(0.8, 1.25)|random_crop(96, pad=8)|pad_boxes(8)|normalize``,
  batches of 16: ~2-3 ms of CPU a record. The first run builds the dataset into the TFDS data dir (~15 s).

Prints a markdown table: dataset, workers, records/s, ratio to 0 workers, start-up s (from ``iter(loader)`` to
the first batch: spawning the workers, which import mlcv, and their first batches; excluded from records/s),
and the CPU time all the processes (this one and its workers) spent a record in the measured window, less
sensitive to the machine's load than records/s (what workers add: pickling, shared memory, polling). Records/s
is the best of ``--repeats`` windows of ``--*-batches`` batches, after the first batch and 2 + 2 x workers more
(the workers' buffers filling). Every row runs in one process, one loader at a time, its workers stopped before
the next; the load average is printed before each dataset, since the machine (2 cores) is shared. About 1.5 min
with the defaults.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import digits_cnn, scenes_retinanet  # noqa: E402
from mlcv.data import pipeline  # noqa: E402
from mlcv.training.setup import RunSetup  # noqa: E402

SEED = 0


@dataclass
class Row:
    dataset: str
    workers: int
    rate: float  # records/s, best window
    startup_s: float
    cpu_ms: float  # CPU ms a record, every process, in the best window


def _cpu_s(proc: psutil.Process) -> float:
    """User + system CPU seconds of ``proc`` and its living children (the grain workers)."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def _close(it: Any) -> None:
    """Stops the loader's worker processes now rather than at garbage collection."""
    # grain 0.2's DataLoaderIterator has no close() of its own; the dataset iterator it wraps stops the workers.
    inner = getattr(it, "_iterator", None)
    if inner is not None and hasattr(inner, "close"):
        inner.close()


def measure(name: str, config: Any, setup: RunSetup, workers: int, batches: int, repeats: int) -> Row:
    """Records/s of ``train_loader`` with ``workers`` worker processes, as the training loop builds it."""
    dc = config.data
    loader = pipeline.train_loader(
        setup.sources["train"],
        batch_size=dc.batch_size,
        pp=dc.pp_train,
        op_defaults=setup.spec.op_defaults,
        keys=setup.task.batch_keys,
        seed=SEED,
        worker_count=workers,
        checks=(dc.name, setup.task.train_range_checks()),
    )
    proc = psutil.Process()
    t = time.perf_counter()
    it = iter(loader)
    next(it)
    startup = time.perf_counter() - t
    try:
        for _ in range(2 + 2 * workers):
            next(it)
        best, best_cpu = 0.0, 0.0
        for _ in range(repeats):
            cpu, t = _cpu_s(proc), time.perf_counter()
            for _ in range(batches):
                next(it)
            rate = batches * dc.batch_size / (time.perf_counter() - t)
            if rate > best:
                best, best_cpu = rate, 1e3 * (_cpu_s(proc) - cpu) / (batches * dc.batch_size)
    finally:
        _close(it)
    return Row(name, workers, best, startup, best_cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2, 4])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--digits-batches", type=int, default=100, help="batches of 64 a window")
    parser.add_argument("--scenes-batches", type=int, default=40, help="batches of 16 a window")
    args = parser.parse_args()
    if 0 not in args.workers:
        parser.error("--workers must include 0: the ratios divide by it")
    cases = [
        ("digits 8x8x1", digits_cnn.get_config(), args.digits_batches),
        ("digit_scenes 96x96x3 (detectors)", scenes_retinanet.get_config(), args.scenes_batches),
    ]
    print(f"{os.cpu_count()} CPUs", file=sys.stderr)
    rows: list[Row] = []
    for name, config, batches in cases:
        setup = RunSetup(config)  # builds digit_scenes into the TFDS data dir the first time
        print(f"{name}: pp_train {config.data.pp_train!r}, batches of {config.data.batch_size}", file=sys.stderr)
        print(f"{name}: load average {os.getloadavg()[0]:.2f} before", file=sys.stderr)
        for workers in args.workers:
            row = measure(name, config, setup, workers, batches, args.repeats)
            rows.append(row)
            print(
                f"{name}: {workers} workers: {row.rate:,.0f} records/s, start-up {row.startup_s:.2f} s",
                file=sys.stderr,
            )
    print(
        f"\n| dataset (best of {args.repeats} windows) | workers | records/s | vs 0 workers | start-up s "
        "| CPU ms / record |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        base = next(r.rate for r in rows if r.dataset == row.dataset and r.workers == 0)
        print(
            f"| {row.dataset} | {row.workers} | {row.rate:,.0f} | {row.rate / base:.2f}x | {row.startup_s:.2f} | "
            f"{row.cpu_ms:.3f} |"
        )
    print(f"\nload average after: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()

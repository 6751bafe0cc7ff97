"""Throughput of the digits training input pipeline, and why it reads in one thread.

Run:
  .venv/bin/python benchmarks/input_pipeline.py [--batches 200]

Prints records/s for: raw reads of the TFDS ArrayRecord source; the grain
loader with grain's default read-ahead (16 threads, 500-record buffer); and
the loader as mlcv configures it (reads in the calling thread). Every row
runs in the same process, so the ratios hold on a noisy shared machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import grain.python as gp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlcv import data  # noqa: E402
from mlcv.data import pipeline  # noqa: E402

PP = "random_crop(8, pad=1)|normalize"


def _loader(src, spec, read_options):
    return gp.DataLoader(
        data_source=src,
        sampler=gp.IndexSampler(len(src), gp.NoSharding(), shuffle=True, num_epochs=None, seed=0),
        operations=[pipeline.Preprocess(PP, spec.op_defaults, ("image", "label")), gp.Batch(64, drop_remainder=True)],
        worker_count=0,
        read_options=read_options,
    )


def _rate(make_iter, batches: int) -> float:
    it = make_iter()
    next(it)  # start-up (threads, first reads) is not throughput
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * 64 / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    args = parser.parse_args()
    spec = data.get("digits")
    src = data.source(spec, spec.splits["train"])

    def raw():
        i = 0
        while True:
            yield [src[(i + j) % len(src)] for j in range(64)]
            i += 64

    mlcv_opts = pipeline.READ_OPTIONS
    rows = [
        ("raw source reads (no preprocessing)", _rate(raw, args.batches)),
        ("grain, default ReadOptions", _rate(lambda: iter(_loader(src, spec, gp.ReadOptions())), args.batches)),
        ("grain, mlcv ReadOptions (in-thread)", _rate(lambda: iter(_loader(src, spec, mlcv_opts)), args.batches)),
    ]
    base = rows[1][1]
    print(f"| pipeline ({args.batches} batches of 64) | records/s | vs grain default |")
    print("|---|---:|---:|")
    for name, rate in rows:
        print(f"| {name} | {rate:,.0f} | {rate / base:.2f}x |")


if __name__ == "__main__":
    main()

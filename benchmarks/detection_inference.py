"""Inference time per image of finished detector runs: the jitted forward pass and decoding on the test split.

Run:
  .venv/bin/python benchmarks/detection_inference.py runs/scenes_centernet runs/scenes_retinanet [--repeats 3]

For each run (its selected checkpoint): the test split preprocessed once into batches of
``config.data.eval_batch_size``, one warm-up pass (compiles), then ``--repeats`` timed passes of the task's
``predict`` (network, decoding, NMS where the detector has one) over every batch, with the outputs on the
host. Prints the median milliseconds per image and images per second; preprocessing is not timed.
Figures measured are in the experiment files' docstrings and the README's detection table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlcv import data  # noqa: E402
from mlcv.data import pipeline  # noqa: E402
from mlcv.training import runs  # noqa: E402


def time_run(workdir: str, repeats: int) -> tuple[float, int]:
    """Median seconds of one pass over the test split, and its image count."""
    run = runs.load_run(workdir)
    config = run.config
    spec = data.get(config.data.name)
    source = data.source(spec, runs.dataset_split(config, spec, "test"), data_dir=config.data.get("data_dir"))
    batches = list(
        pipeline.eval_batches(
            source,
            batch_size=config.data.eval_batch_size,
            pp=config.data.pp_eval,
            op_defaults=spec.op_defaults,
            keys=run.task.batch_keys,
        )
    )
    images = int(sum(b["mask"].sum() for b in batches))

    def one_pass() -> float:
        t0 = time.perf_counter()
        for batch in batches:
            jax.device_get(run.predict(batch))
        return time.perf_counter() - t0

    one_pass()  # compiles
    return statistics.median(one_pass() for _ in range(repeats)), images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdirs", nargs="+")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for workdir in args.workdirs:
        seconds, images = time_run(workdir, args.repeats)
        rate = images / seconds
        print(f"{workdir}: {1000 * seconds / images:.2f} ms an image, {rate:.0f} images/s ({images} images)")


if __name__ == "__main__":
    main()

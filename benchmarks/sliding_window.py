"""How slow the course's sliding-window segmentation baseline is, against the same classifier run convolutionally.

Run:
  .venv/bin/python benchmarks/sliding_window.py [--sizes 64 96] [--batch 4] [--patch 17] [--repeats 3]

One randomly initialised ``mlcv.models.sliding_window.PatchClassifier`` (its default layers: 3x3 'VALID'
convolutions of 16, 32 and 32 channels, a 64-unit hidden Dense layer, 5 classes; 3 input channels), two ways
on the same random ``batch x size x size`` images: ``sliding_window_logits`` (one window cut per pixel and
classified, 4,096 windows a call) and ``fully_convolutional_logits`` (one convolutional pass over the padded
image). Each is called once to compile, then ``--repeats`` times; the median is reported per image. The two
outputs are checked equal (max abs difference printed).

FLOPs follow the course (a multiply-add counts 2, only convolutions and Dense layers): the sliding window's
are windows x the classifier's per-window FLOPs (from ``mlcv.models.layer_table``), the convolutional
version's are counted from its layer shapes on the padded image; XLA's own count of each compiled
computation is printed beside them (all its operations, not only multiply-adds; for the sliding window
scaled to the real windows, as the last chunk is filled up with repeats). The hidden and class layers cost
the same in both (once per pixel); only the 3x3 convolutions differ, once per window position of every
window against once per position of the padded image.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import mlcv  # noqa: E402, F401 - sets mlcv's XLA CPU flags before JAX starts its backend
from mlcv.models import layer_table  # noqa: E402
from mlcv.models.sliding_window import (  # noqa: E402
    PatchClassifier,
    fully_convolutional_logits,
    sliding_window_logits,
)

CHANNELS = 3
NUM_CLASSES = 5


def _median_s(fn, repeats: int) -> float:
    fn()  # compiles
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def window_flops(model: PatchClassifier) -> dict[str, int]:
    """The classifier's FLOPs on one window, by part: the 3x3 convolutions, ``fc`` and ``classifier``."""
    rows = layer_table.layer_table(model, (model.patch, model.patch, CHANNELS))
    parts = {"3x3 convolutions": 0, "fc": 0, "classifier": 0}
    for row in rows[1:]:  # the first row is the input
        parts["3x3 convolutions" if row.name.startswith("convs") else row.name] += row.flops
    return parts


def convolutional_flops(model: PatchClassifier, height: int, width: int) -> dict[str, int]:
    """The fully convolutional pass's FLOPs on one image, by part, counted from the layer shapes."""
    h, w = height + model.patch - 1, width + model.patch - 1  # the padded image
    convs, cin = 0, CHANNELS
    for cout in model.features:
        h, w = h - 2, w - 2
        convs += 2 * 9 * cin * cout * h * w
        cin = cout
    k = model.patch - 2 * len(model.features)
    return {
        "3x3 convolutions": convs,
        "fc": 2 * k * k * cin * model.hidden * height * width,
        "classifier": 2 * model.hidden * model.num_classes * height * width,
    }


def xla_flops(fn, *args) -> float:
    """XLA's FLOP count of ``fn`` compiled on ``args`` (model and patch static)."""
    cost = jax.jit(fn, static_argnums=(0, 3)).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["flops"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--patch", type=int, default=17)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=4096)
    args = parser.parse_args()
    start = time.perf_counter()
    load_before = os.getloadavg()
    model = PatchClassifier(num_classes=NUM_CLASSES, patch=args.patch)
    variables = model.init(jax.random.key(0), np.zeros((1, args.patch, args.patch, CHANNELS), np.float32))
    per_window = window_flops(model)
    rng = np.random.default_rng(0)
    print(
        f"PatchClassifier patch {args.patch}, convs {tuple(model.features)}, hidden {model.hidden}, "
        f"{NUM_CLASSES} classes; {sum(per_window.values()):,} FLOPs a window "
        f"({', '.join(f'{k} {v:,}' for k, v in per_window.items())}); batch {args.batch}, "
        f"median of {args.repeats}, chunks of {args.chunk} windows"
    )
    timing_rows, flop_rows = [], []
    for size in args.sizes:
        image = rng.normal(size=(args.batch, size, size, CHANNELS)).astype(np.float32)
        call_args = (model, variables, image, args.patch)
        windowed = np.asarray(sliding_window_logits(*call_args, chunk=args.chunk))
        dense = np.asarray(fully_convolutional_logits(*call_args))
        max_diff = float(np.abs(windowed - dense).max())
        slide_s = _median_s(
            lambda a=call_args: sliding_window_logits(*a, chunk=args.chunk).block_until_ready(), args.repeats
        )
        conv_s = _median_s(lambda a=call_args: fully_convolutional_logits(*a).block_until_ready(), args.repeats)
        windows = size * size  # one classifier evaluation per pixel
        slide_flops = {k: windows * v for k, v in per_window.items()}
        conv_flops = convolutional_flops(model, size, size)
        slide_total, conv_total = sum(slide_flops.values()), sum(conv_flops.values())
        # The last chunk is filled up with repeats of the last window: XLA counts those too, scaled out here.
        chunked = -(-args.batch * windows // args.chunk) * args.chunk
        xla_slide = xla_flops(sliding_window_logits, *call_args) * windows / chunked
        xla_conv = xla_flops(fully_convolutional_logits, *call_args) / args.batch
        timing_rows.append(
            f"| {size}x{size} | {windows:,} | {1e3 * slide_s / args.batch:.1f} | {1e3 * conv_s / args.batch:.2f} "
            f"| {slide_s / conv_s:.0f}x | {slide_total / 1e9:.2f} | {conv_total / 1e9:.3f} "
            f"| {slide_total / conv_total:.1f}x | {xla_slide / 1e9:.2f} / {xla_conv / 1e9:.3f} "
            f"| {slide_total / 1e9 * args.batch / slide_s:.0f} / {conv_total / 1e9 * args.batch / conv_s:.0f} "
            f"| {max_diff:.1e} |"
        )
        for part in per_window:
            flop_rows.append(
                f"| {size}x{size} | {part} | {slide_flops[part] / 1e6:,.1f} | {conv_flops[part] / 1e6:,.1f} "
                f"| {slide_flops[part] / conv_flops[part]:.1f}x |"
            )
    print()
    print(
        "| image | classifier evaluations / image | sliding window ms / image | convolutional ms / image "
        "| time ratio | sliding GFLOP / image | convolutional GFLOP / image | FLOP ratio "
        "| XLA's GFLOP / image (sliding / conv.) | GFLOP/s (sliding / conv.) | max abs difference |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(timing_rows))
    print()
    print("| image | part | sliding window MFLOP / image | convolutional MFLOP / image | ratio |")
    print("|---|---|---:|---:|---:|")
    print("\n".join(flop_rows))
    load_after = os.getloadavg()
    print()
    print(
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after, on {os.cpu_count()} CPUs; "
        f"{time.perf_counter() - start:.0f} s in all"
    )


if __name__ == "__main__":
    main()

"""Optical flow on the synthetic moving layers: FlowNet-C runs against zero flow and OpenCV's Farneback.

Run:
  .venv/bin/python benchmarks/flow.py [--runs WORKDIR,WORKDIR,...] [--repeats 5]

Every row is scored by mlcv's flow evaluator (mlcv.evaluators.flow) on the ``flow_layers`` test split (100 pairs
of 64 x 96): the end-point error pooled over valid pixels and KITTI's outlier rate Fl (EPE > 3 px and > 5 % of the
true length). Zero flow predicts no motion. Farneback (``cv2.calcOpticalFlowFarneback`` on the grey frames, a
3-level pyramid halving each time, 3 iterations, polynomial expansion n = 5, sigma = 1.1) has its averaging window
chosen on the validation split among 5-21 px. FlowNet-C runs (one per training seed; mean ± std) are the
checkpoints ``launch.py`` chose on validation EPE (experiments/layers_flownet.py). Times are per pair, batch 1,
best of ``--repeats`` after a warm-up (JAX: after compilation).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlcv import data  # noqa: E402
from mlcv.data import ops as ops_lib  # noqa: E402
from mlcv.evaluators.flow import FlowEvaluator  # noqa: E402
from mlcv.training import runs  # noqa: E402


def _split(role: str) -> list[dict[str, np.ndarray]]:
    src = data.source(data.get("flow_layers"), role)
    return [src[i] for i in range(len(src))]


def _best_time(fn, repeats: int) -> float:
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return min(times)


def score(predict, split: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """The flow evaluator's scalars for ``predict(record) -> [H, W, 2]`` over ``split``, one pair per batch."""
    ev = FlowEvaluator(draw_images=0)
    for ex in split:
        batch = {"flow": ex["flow"][None], "flow_mask": ex["flow_mask"][None], "mask": np.ones(1, np.int32)}
        ev.update(jax.device_get(ev.batch_fn({"flow": np.asarray(predict(ex), np.float32)[None]}, batch)))
    return ev.result()[0]


def farneback(window: int):
    """OpenCV's dense Farneback flow of the first grey frame to the second, (u, v) in px."""

    def predict(ex):
        first, second = ex["image"][..., 0], ex["image_next"][..., 0]
        return cv2.calcOpticalFlowFarneback(first, second, None, 0.5, 3, window, 3, 5, 1.1, 0)

    return predict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="", help="FlowNet-C workdirs, comma-separated (one per seed)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    val, test = _split("validation"), _split("test")

    rows = [("zero flow", score(lambda ex: np.zeros((*ex["image"].shape[:2], 2)), test), 0.0)]
    windows = (5, 9, 13, 17, 21)
    best = min(windows, key=lambda w: score(farneback(w), val)["flow_epe"])
    rows.append(
        (
            f"OpenCV Farneback (window {best} px, chosen on validation)",
            score(farneback(best), test),
            _best_time(lambda: farneback(best)(test[0]), args.repeats),
        )
    )
    members = [runs.load_run(wd) for wd in args.runs.split(",") if wd]
    if members:
        figures = [runs.evaluate_runs([m], "test", batch_size=25)["ensemble"] for m in members]
        times = []
        for m in members:
            op = ops_lib.parse(m.config.data.pp_eval, data.get("flow_layers").op_defaults)
            batch = {k: np.asarray(v)[None] for k, v in op(dict(test[0]), None).items() if k in m.task.input_keys}
            times.append(_best_time(lambda m=m, batch=batch: m.predict(batch)["flow"], args.repeats))
        for wd, f, t in zip(args.runs.split(","), figures, times, strict=False):
            print(f"<!-- {wd}: EPE {f['flow_epe']:.4f}, Fl {100 * f['flow_outliers']:.2f} %, {1000 * t:.1f} ms -->")
        epe = np.array([f["flow_epe"] for f in figures])
        fl = 100 * np.array([f["flow_outliers"] for f in figures])
        sd = (lambda x: f" ± {x.std(ddof=1):.3f}") if len(members) > 1 else (lambda x: "")
        rows.append((f"FlowNet-C ({len(members)} seeds)", (epe, fl, sd), float(np.mean(times))))

    print(f"flow_layers test split (100 pairs, 64 x 96), {jax.devices()[0]}")
    print()
    print("| method | EPE (px) | Fl outliers % | time / pair (ms) |")
    print("|---|---:|---:|---:|")
    for name, m, t in rows:
        if isinstance(m, tuple):
            epe, fl, sd = m
            print(f"| {name} | {epe.mean():.3f}{sd(epe)} | {fl.mean():.2f}{sd(fl)} | {1000 * t:.1f} |")
        else:
            print(f"| {name} | {m['flow_epe']:.3f} | {100 * m['flow_outliers']:.2f} | {1000 * t:.1f} |")


if __name__ == "__main__":
    main()

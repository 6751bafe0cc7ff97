"""Block-matching stereo on the Middlebury Motorcycle pair: mlcv's NCC matcher against OpenCV's StereoBM and SGBM.

Run:
  .venv/bin/python benchmarks/stereo.py [--repeats 5]

Every row runs in the same process on scikit-image's ``data.stereo_motorcycle()``
(500 x 741, ground truth 7.2-59.9 px) with 80 disparities (0-79). Columns: bad-2 %
(valid ground-truth pixels whose estimate is missing or off by more than 2 px),
EPE over pixels with an estimate, density (valid pixels with an estimate) and the
matching time, best of ``--repeats`` after one warm-up call (JAX: after
compilation). OpenCV: StereoBM(numDisparities=80, blockSize=15) on grey;
StereoSGBM(numDisparities=80, blockSize=5, P1=8*3*5^2, P2=32*3*5^2, OpenCV's
suggested smoothness penalties for 3 channels) on the colour pair; their
negative (invalid) outputs count as missing. The "+ mlcv fill" rows fill OpenCV's
missing pixels with mlcv's background fill (the farther of the nearest estimates on
the row), as the experiment does after its left-right check.

Measured on the 2-core CPU development machine (shared; ~15 s for the script):
mlcv NCC 5x5 + LR check + fill 11.3 % bad-2 in 0.20-0.36 s (8-20x StereoBM's time);
StereoBM 29.1 % in 18-27 ms; StereoSGBM 19.9 % in 70-130 ms; with the same fill
StereoBM 14.9 %, StereoSGBM 10.1 %.
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

from mlcv.data.sources import stereo as stereo_data  # noqa: E402
from mlcv.metrics import stereo as stereo_metrics  # noqa: E402
from mlcv.ops import stereo as ops  # noqa: E402

NUM_DISPARITIES = 80


def _best_time(fn, repeats: int) -> tuple[np.ndarray, float]:
    out = np.asarray(jax.block_until_ready(fn()))  # warm-up: compilation, OpenCV buffers
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return out, min(times)


def _opencv_disparity(raw: np.ndarray) -> np.ndarray:
    # OpenCV returns 16 x disparity as int16, (minDisparity - 1) * 16 where it has no estimate.
    d = raw.astype(np.float32) / 16.0
    return np.where(d >= 0, d, np.nan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from skimage import data

    rgb_left, rgb_right, _ = data.stereo_motorcycle()
    pair = stereo_data.motorcycle()
    gt = pair["disparity"]
    left, right = jax.device_put(pair["left"]), jax.device_put(pair["right"])
    grey_left, grey_right = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in (rgb_left, rgb_right))

    rows = []

    def mlcv_row(name: str, radius: int, lr: float | None, fill: bool) -> None:
        def run():
            return ops.block_match(
                left, right, radius=radius, num_disparities=NUM_DISPARITIES, lr_threshold=lr, subpixel=True, fill=fill
            )

        rows.append((name, *_best_time(run, args.repeats)))

    mlcv_row("mlcv NCC 5x5, LR check 0 px + fill (the experiment's choice)", 2, 0.0, True)
    mlcv_row("mlcv NCC 5x5, WTA + parabola only", 2, None, False)
    mlcv_row("mlcv NCC 5x5, LR check 0 px, no fill", 2, 0.0, False)
    mlcv_row("mlcv NCC 15x15, LR check 0 px + fill", 7, 0.0, True)

    bm = cv2.StereoBM_create(numDisparities=NUM_DISPARITIES, blockSize=15)
    out, t = _best_time(lambda: bm.compute(grey_left, grey_right), args.repeats)
    rows.append(("OpenCV StereoBM, block 15 (grey)", _opencv_disparity(out), t))
    sgbm = cv2.StereoSGBM_create(
        minDisparity=0, numDisparities=NUM_DISPARITIES, blockSize=5, P1=8 * 3 * 5**2, P2=32 * 3 * 5**2
    )
    out, t = _best_time(lambda: sgbm.compute(rgb_left, rgb_right), args.repeats)
    rows.append(("OpenCV StereoSGBM, block 5 (colour)", _opencv_disparity(out), t))

    # The same background fill as mlcv's, so that the dense rows compare like with like; its time is added.
    fill = jax.jit(ops.fill_background)
    for name, disp, t in rows[-2:]:
        filled, t_fill = _best_time(lambda disp=disp: fill(disp), args.repeats)
        rows.append((f"{name} + mlcv fill", filled, t + t_fill))

    bm_time = rows[-4][2]
    print(f"Middlebury Motorcycle (scikit-image, 500 x 741), {NUM_DISPARITIES} disparities, {jax.devices()[0]}")
    print()
    print("| method | bad-2 % | EPE (px) | density % | time (ms) | time vs StereoBM |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, disp, t in rows:
        m = stereo_metrics.summarize(disp, gt)
        print(
            f"| {name} | {m['bad2_pct']:.1f} | {m['epe_px']:.2f} | {m['density_pct']:.1f} | {1000 * t:.0f} "
            f"| {t / bm_time:.1f}x |"
        )


if __name__ == "__main__":
    main()

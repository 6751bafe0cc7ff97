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
the row), as the experiment does after its left-right check. The "plain NCC" rows score
with the course's eq. 73 (no mean subtracted per window, ``zero_mean=False``), the
others with zero-mean NCC; the "right view + 30" rows add 30 grey levels (unclipped) to the right
image, an exposure difference that plain NCC is not invariant to.

Measured on the 2-core CPU development machine (shared; ~20 s for the script):
mlcv NCC 5x5 + LR check + fill 11.3 % bad-2 in 0.20-0.36 s (8-20x StereoBM's time);
StereoBM 29.1 % in 18-27 ms; StereoSGBM 19.9 % in 70-130 ms; with the same fill
StereoBM 14.9 %, StereoSGBM 10.1 %. Plain NCC 5x5 11.2 %; with the right view + 30,
zero-mean NCC 11.3 % (unchanged) and plain NCC 15.6 %.

With ``--runs LABEL=WORKDIR,WORKDIR,... [LABEL=...]`` (``--runs`` alone: the classic rows only) it then prints issue
14's comparison table: the classic methods and the learned runs (one label per method, one workdir per training seed;
mean ± std over seeds) on the synthetic ``stereo_planes`` test split and on Motorcycle, which no run trained or was
selected on. On the planes the classic methods' settings (the NCC window and LR tolerance, for zero-mean and plain
NCC alike; BM and SGBM block sizes) are chosen on the planes' validation split, each with mlcv's fill; a learned run
is scored by its own evaluator (bad-2 and EPE over valid
pixels, occluded ones included). MC-CNN's aggregation window (``mccnn.aggregate_radius``, 0-3) and then its
semi-global matching penalties (none, or ``mccnn.sgm_p1`` 0.05-1.6 with ``sgm_p2 = 4 sgm_p1``) are chosen on the
planes' validation split too. On Motorcycle MC-CNN scores disparities 0-79 at full resolution; DispNet-C, GC-Net
and Monodepth, trained on 64 x 128 pairs with disparities up to 24 px, run on the pair at half resolution (250 x
370, disparities up to 30 px) and their disparity is brought back to full resolution
(:func:`mlcv.orchestration.stereo_transfer.predict_pair`). Times are per pair, best of ``--repeats`` after
compilation, batch 1: the planes' first test pair and the Motorcycle pair.
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
    parser.add_argument("--runs", nargs="*", default=None, help="LABEL=WORKDIR,WORKDIR,... per learned method")
    parser.add_argument("--learned-only", action="store_true", help="with --runs: only the learned rows")
    args = parser.parse_args()
    from skimage import data

    rgb_left, rgb_right, _ = data.stereo_motorcycle()
    pair = stereo_data.motorcycle()
    gt = pair["disparity"]
    left, right = jax.device_put(pair["left"]), jax.device_put(pair["right"])
    grey_left, grey_right = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in (rgb_left, rgb_right))

    rows = []

    def mlcv_row(name: str, radius: int, lr: float | None, fill: bool, zero_mean: bool = True, offset=0.0) -> None:
        right_view = right + offset

        def run():
            return ops.block_match(
                left,
                right_view,
                radius=radius,
                num_disparities=NUM_DISPARITIES,
                lr_threshold=lr,
                subpixel=True,
                fill=fill,
                zero_mean=zero_mean,
            )

        rows.append((name, *_best_time(run, args.repeats)))

    mlcv_row("mlcv NCC 5x5, LR check 0 px + fill (the experiment's choice)", 2, 0.0, True)
    mlcv_row("mlcv NCC 5x5, WTA + parabola only", 2, None, False)
    mlcv_row("mlcv NCC 5x5, LR check 0 px, no fill", 2, 0.0, False)
    mlcv_row("mlcv NCC 15x15, LR check 0 px + fill", 7, 0.0, True)
    mlcv_row(
        "mlcv plain NCC 5x5, LR check 0 px + fill (the experiment's choice, stereo.ncc=plain)", 2, 0.0, True, False
    )
    # The same two matchers when the right camera is 30 grey levels brighter (about half the images' std).
    mlcv_row("mlcv NCC 5x5, LR check 0 px + fill, right view + 30", 2, 0.0, True, True, 30.0)
    mlcv_row("mlcv plain NCC 5x5, LR check 0 px + fill, right view + 30", 2, 0.0, True, False, 30.0)

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
    if args.runs is not None:
        moto_rows = {name: (disp, t) for name, disp, t in rows}
        comparison(args.runs, moto_rows, gt, args.repeats, classic=not args.learned_only)


def _planes(role: str) -> list[dict[str, np.ndarray]]:
    from mlcv import data

    src = data.source(data.get("stereo_planes"), role)
    return [src[i] for i in range(len(src))]


def _classic_on_planes(repeats: int) -> dict[str, tuple[dict[str, float], float, str]]:
    """Zero-mean and plain NCC, StereoBM and StereoSGBM (each + mlcv fill) on the planes' test split, settings
    chosen on validation."""
    val, test = _planes("validation"), _planes("test")
    fill = jax.jit(ops.fill_background)

    def ncc(r, lr, zero_mean=True):
        def run(ex):
            grey = [jax.device_put(ex[k][..., 0].astype(np.float32)) for k in ("image", "image_right")]
            return ops.block_match(
                *grey, radius=r, num_disparities=32, lr_threshold=lr, subpixel=True, fill=True, zero_mean=zero_mean
            )

        return run

    def opencv(matcher):
        def run(ex):
            raw = matcher.compute(ex["image"][..., 0], ex["image_right"][..., 0])
            return fill(_opencv_disparity(raw))

        return run

    grids = {
        "mlcv NCC + LR check + fill": {
            f"{2 * r + 1}x{2 * r + 1}, LR {lr:g} px": ncc(r, lr) for r in (1, 2, 3, 4) for lr in (0.0, 1.0)
        },
        "mlcv plain NCC + LR check + fill": {
            f"{2 * r + 1}x{2 * r + 1}, LR {lr:g} px": ncc(r, lr, False) for r in (1, 2, 3, 4) for lr in (0.0, 1.0)
        },
        "OpenCV StereoBM + mlcv fill": {
            f"block {b}": opencv(cv2.StereoBM_create(numDisparities=32, blockSize=b)) for b in (5, 9, 15)
        },
        "OpenCV StereoSGBM + mlcv fill": {
            f"block {b}": opencv(
                cv2.StereoSGBM_create(minDisparity=0, numDisparities=32, blockSize=b, P1=8 * b * b, P2=32 * b * b)
            )
            for b in (3, 5, 7)
        },
    }

    def score(fn, split):
        pred = np.stack([np.asarray(fn(ex)) for ex in split])
        gt = np.stack([np.where(ex["disparity_mask"], ex["disparity"], np.nan) for ex in split])
        # Pooled over the split's pixels; rows stacked (the fill of the summary works row by row).
        return stereo_metrics.summarize(pred.reshape(-1, pred.shape[-1]), gt.reshape(-1, gt.shape[-1]))

    out = {}
    for method, grid in grids.items():
        choice = min(grid, key=lambda k: score(grid[k], val)["bad2_pct"])
        _, t = _best_time(lambda fn=grid[choice]: fn(test[0]), repeats)
        out[method] = (score(grid[choice], test), t, choice)
    return out


def _select_mccnn(run):
    """MC-CNN's post-processing chosen on the planes' validation bad-2: first the aggregation window (radius 0-3),
    then with it semi-global matching (none, or P1 in 0.05-1.6 with P2 = 4 P1)."""
    from mlcv.orchestration import stereo_transfer
    from mlcv.training import runs

    for key in ("aggregate_radius", "sgm_p1", "sgm_p2"):  # runs trained before these settings existed
        if key not in run.config.mccnn:
            with run.config.unlocked():
                run.config.mccnn[key] = 0.0 if key.startswith("sgm") else 0

    def val_bad2(overrides):
        member = stereo_transfer.with_overrides(run, overrides, "stereo_planes")
        return runs.evaluate_runs([member], "validation", batch_size=10)["ensemble"]["bad2"], member

    radius = min(range(4), key=lambda r: val_bad2({"mccnn.aggregate_radius": r})[0])
    grid = [
        {"mccnn.aggregate_radius": radius, "mccnn.sgm_p1": p, "mccnn.sgm_p2": 4 * p}
        for p in (0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
    ]
    return min((val_bad2(o) for o in grid), key=lambda t: t[0])[1]


def _learned(workdir: str, gt_moto: np.ndarray, repeats: int, select: bool = False) -> dict[str, float]:
    """One run's planes test figures (its evaluator) and Motorcycle figures, with the times per pair; ``select``:
    MC-CNN with the aggregation and SGM chosen on validation (else as trained: WTA, LR check, fill)."""
    from mlcv.data.sources import stereo_builders
    from mlcv.orchestration import stereo_transfer
    from mlcv.training import runs

    run = runs.load_run(workdir)
    if select:
        run = _select_mccnn(run)
    planes = runs.evaluate_runs([run], "test", batch_size=10)["ensemble"]
    first = _planes("test")[0]
    _, t_planes = stereo_transfer.predict_pair(run, first["image"], first["image_right"], repeats=repeats)
    record = stereo_builders.motorcycle_record()
    if run.config.task == "mccnn":
        moto_run, downscale = stereo_transfer.with_overrides(run, {"mccnn.max_disparity": 79}, "motorcycle"), 1
    else:
        moto_run, downscale = run, 2
    disp, t_moto = stereo_transfer.predict_pair(
        moto_run, record["image"], record["image_right"], downscale=downscale, repeats=repeats
    )
    moto = stereo_metrics.summarize(disp, gt_moto)
    return {
        "planes_bad2": 100 * planes["bad2"],
        "planes_epe": planes["epe"],
        "planes_ms": 1000 * t_planes,
        "moto_bad2": moto["bad2_pct"],
        "moto_epe": moto["epe_px"],
        "moto_s": t_moto,
        **(
            {"radius": float(run.config.mccnn.aggregate_radius), "sgm_p1": float(run.config.mccnn.sgm_p1)}
            if select
            else {}
        ),
    }


def comparison(run_args: list[str], moto_rows: dict, gt_moto: np.ndarray, repeats: int, classic: bool = True) -> None:
    """Issue 14's table: classic and learned methods on the planes' test split and on Motorcycle."""

    def pm(values, fmt):
        values = np.asarray(values, float)
        return f"{values.mean():{fmt}} ± {values.std(ddof=1):{fmt}}" if len(values) > 1 else f"{values[0]:{fmt}}"

    print()
    print(
        "| method | planes test bad-2 % | planes EPE (px) | Motorcycle bad-2 % | Motorcycle EPE (px) | "
        "time / planes pair (ms) | time / Motorcycle pair (s) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    moto_of = {
        "mlcv NCC + LR check + fill": "mlcv NCC 5x5, LR check 0 px + fill (the experiment's choice)",
        "mlcv plain NCC + LR check + fill": (
            "mlcv plain NCC 5x5, LR check 0 px + fill (the experiment's choice, stereo.ncc=plain)"
        ),
        "OpenCV StereoBM + mlcv fill": "OpenCV StereoBM, block 15 (grey) + mlcv fill",
        "OpenCV StereoSGBM + mlcv fill": "OpenCV StereoSGBM, block 5 (colour) + mlcv fill",
    }
    for method, (m, t, choice) in (_classic_on_planes(repeats) if classic else {}).items():
        disp, t_moto = moto_rows[moto_of[method]]
        mm = stereo_metrics.summarize(disp, gt_moto)
        print(
            f"| {method} (planes: {choice}) | {m['bad2_pct']:.2f} | {m['epe_px']:.3f} | {mm['bad2_pct']:.2f} | "
            f"{mm['epe_px']:.3f} | {1000 * t:.1f} | {t_moto:.3f} |"
        )
    if classic:
        ncc_sgm, t, choice, moto_sgm, t_moto = _ncc_sgm(repeats)
        print(
            f"| mlcv NCC + SGM + LR check + fill (planes: {choice}) | {ncc_sgm['bad2_pct']:.2f} | "
            f"{ncc_sgm['epe_px']:.3f} | {moto_sgm['bad2_pct']:.2f} | {moto_sgm['epe_px']:.3f} | {1000 * t:.1f} | "
            f"{t_moto:.3f} |"
        )
    for arg in run_args:
        label, _, dirs = arg.partition("=")
        dirs = [wd for wd in dirs.split(",") if wd]
        variants = [(label, False)]
        if "mccnn" in label.lower().replace("-", ""):
            variants.append((f"{label} + box aggregation + SGM", True))
        for name, select in variants:
            rows = [_learned(wd, gt_moto, repeats, select) for wd in dirs]
            for wd, r in zip(dirs, rows, strict=True):
                print(f"<!-- {name} {wd}: " + ", ".join(f"{k} {v:.3f}" for k, v in r.items()) + " -->")
            col = {k: [r[k] for r in rows] for k in rows[0]}
            print(
                f"| {name} ({len(rows)} seeds) | {pm(col['planes_bad2'], '.2f')} | {pm(col['planes_epe'], '.3f')} | "
                f"{pm(col['moto_bad2'], '.2f')} | {pm(col['moto_epe'], '.3f')} | {pm(col['planes_ms'], '.1f')} | "
                f"{pm(col['moto_s'], '.3f')} |",
                flush=True,
            )


def _ncc_sgm(repeats: int):
    """NCC with the same semi-global matching as MC-CNN's, window and penalties chosen on the planes' validation
    split; then on Motorcycle (80 disparities)."""
    from mlcv.ops import sgm

    def match(left, right, radius, p1, disparities):
        vol = ops.ncc_cost_volume(left, right, radius=radius, num_disparities=disparities)
        vol = sgm.semi_global(vol, p1=p1, p2=4 * p1)
        return ops.disparity_from_volume(vol, lr_threshold=0.0, subpixel=True, fill=True)

    def score(split, radius, p1):
        pred, gt = [], []
        for ex in split:
            grey = [jax.device_put(ex[k][..., 0].astype(np.float32)) for k in ("image", "image_right")]
            pred.append(np.asarray(match(*grey, radius, p1, 32)))
            gt.append(np.where(ex["disparity_mask"], ex["disparity"], np.nan))
        pred, gt = np.stack(pred), np.stack(gt)
        return stereo_metrics.summarize(pred.reshape(-1, pred.shape[-1]), gt.reshape(-1, gt.shape[-1]))

    val, test = _planes("validation"), _planes("test")
    grid = [(r, p) for r in (1, 2, 3) for p in (0.05, 0.1, 0.2, 0.4, 0.8)]
    radius, p1 = min(grid, key=lambda g: score(val, *g)["bad2_pct"])
    first = [jax.device_put(test[0][k][..., 0].astype(np.float32)) for k in ("image", "image_right")]
    _, t = _best_time(lambda: match(*first, radius, p1, 32), repeats)
    pair = stereo_data.motorcycle()
    moto, t_moto = _best_time(lambda: match(pair["left"], pair["right"], radius, p1, NUM_DISPARITIES), repeats)
    choice = f"{2 * radius + 1}x{2 * radius + 1}, P1 {p1:g}, P2 {4 * p1:g}"
    return score(test, radius, p1), t, choice, stereo_metrics.summarize(moto, pair["disparity"]), t_moto


if __name__ == "__main__":
    main()

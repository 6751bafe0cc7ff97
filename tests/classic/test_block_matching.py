"""Block-matching stereo end to end, its config errors and its data: the Motorcycle pair and the generator."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from conftest import ROOT, launch_cmd

import mlcv
from mlcv.config import ConfigError
from mlcv.data.sources import stereo as stereo_data
from mlcv.ops import stereo as ops

EXPERIMENT = str(ROOT / "experiments" / "motorcycle_block_matching.py")


def _config(arg: str = "runlocal"):
    from experiments import motorcycle_block_matching

    return motorcycle_block_matching.get_config(arg)


def test_runlocal_through_launch_writes_the_workdir(tmp_path):
    workdir = tmp_path / "bm"
    out = subprocess.run(
        launch_cmd("--config", f"{EXPERIMENT}:runlocal", "--workdir", str(workdir)),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    line = out.stdout.strip().splitlines()[-1]
    assert line.startswith(f"{workdir}: test bad-2 ") and "wall time" in line
    summary = json.loads((workdir / "summary.json").read_text())
    assert json.loads((workdir / "config.json").read_text())["task"] == "block_matching"
    # One logged record per (radius, LR threshold) trial of the selection grid.
    trials = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [t["radius"] for t in trials] == [1.0, 2.0]
    assert summary["fit"]["chosen_radius"] in (1, 2)
    test = summary["test"]
    # The 4x-downscaled pair is easy: a working matcher gets most pixels within 2 px; a broken one does not.
    assert 0 <= test["bad2_pct"] < 30 and test["epe_px"] < 2 and test["density_pct"] > 90
    assert test["depth_abs_rel"] < 0.2
    for name in ("test_disparity.png", "validation_disparity.png", "selection.png"):
        assert (workdir / "plots" / name).stat().st_size > 1000
    # The same config in this process gives the same numbers (all but the timing).
    again = mlcv.run(_config(), tmp_path / "again")
    for role in ("validation", "test"):
        got = {k: v for k, v in again[role].items() if k != "match_time_ms"}
        assert got == {k: v for k, v in summary[role].items() if k != "match_time_ms"}


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("stereo.radii", (0, 2), "config.stereo.radii"),
        ("stereo.ncc", "cosine", "config.stereo.ncc must be one of 'zero_mean', 'plain', got 'cosine'"),
        ("stereo.lr_thresholds", (-1.0,), "config.stereo.lr_thresholds"),
        ("stereo.num_disparities", 1, "config.stereo.num_disparities"),
        ("data.downscale", 0, "config.data.downscale"),
        ("data.synthetic.max_disparity", 40.0, "config.data.synthetic.max_disparity"),
    ],
)
def test_bad_values_are_config_errors_before_anything_is_written(tmp_path, key, value, match):
    config = _config()
    parent, _, leaf = key.rpartition(".")
    node = config
    for part in parent.split("."):
        node = node[part]
    node[leaf] = value
    with pytest.raises(ConfigError, match=match):
        mlcv.run(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_motorcycle_ground_truth_direction_and_calibration():
    pair = stereo_data.motorcycle()
    left, right, gt = pair["left"], pair["right"], pair["disparity"]
    assert left.shape == right.shape == gt.shape == (500, 741)
    assert 0.05 < np.isnan(gt).mean() < 0.10 and np.nanmin(gt) > 0
    # The left pixel (y, x) is the right pixel (y, x - d): the grey levels agree that way, not the other.
    ys, xs = np.nonzero(np.isfinite(gt))
    for sign, bound in ((-1, 12.0), (1, None)):
        xr = np.round(xs + sign * gt[ys, xs]).astype(int)
        ok = (xr >= 0) & (xr < 741)
        diff = np.abs(left[ys[ok], xs[ok]] - right[ys[ok], xr[ok]]).mean()
        assert diff < bound if bound else diff > 30
    # Middlebury 2014 Motorcycle calib.txt (full resolution): f 3979.911 px, doffs 124.343 px, baseline 193.001 mm.
    # The 4x-downscaled pair must give the same depth for the same scene point (disparity D full-res, D/4 here).
    calib = pair["calibration"]
    full = 193.001 * 3979.911 / (160.0 + 124.343)
    here = ops.disparity_to_depth(160.0 / 4, calib["focal_px"], calib["baseline_mm"], calib["doffs_px"])
    assert float(here) == pytest.approx(full, rel=1e-4)


def test_downscaled_motorcycle_scales_disparity_and_calibration():
    small = stereo_data.motorcycle(4)
    assert small["left"].shape == (125, 185)
    assert np.nanmax(small["disparity"]) <= 60 / 4
    assert small["calibration"]["focal_px"] == pytest.approx(994.978 / 4)


def test_synthetic_pair_ground_truth_and_occlusions():
    pair = stereo_data.synthetic_pair(0, 60, 100, planes=3, min_disparity=3, max_disparity=12, noise_std=0.0)
    left, right, gt, occ = pair["left"], pair["right"], pair["disparity"], pair["occluded"]
    assert np.isfinite(gt).all() and 3 <= gt.min() and gt.max() <= 12
    assert len(np.unique(gt)) == 4  # background + three planes, unless one hides another entirely
    ys, xs = np.mgrid[0:60, 0:100]
    # Visible pixels: the right image sampled at x - d (linear interpolation) is the left pixel, up to the
    # smoothing that interpolating twice costs; occluded pixels show another surface.
    xr = xs - gt
    x0 = np.clip(np.floor(xr).astype(int), 0, 98)
    f = xr - x0
    sampled = (1 - f) * right[ys, x0] + f * right[ys, x0 + 1]
    err = np.abs(sampled - left)
    seen = ~occ & (xr >= 0)
    assert err[seen].mean() < 0.15 * err[occ & (xr >= 0)].mean()
    # Same seed, same pair; another seed, another pair.
    again = stereo_data.synthetic_pair(0, 60, 100, planes=3, min_disparity=3, max_disparity=12, noise_std=0.0)
    np.testing.assert_array_equal(again["left"], left)
    other = stereo_data.synthetic_pair(1, 60, 100, planes=3, min_disparity=3, max_disparity=12, noise_std=0.0)
    assert not np.array_equal(other["left"], left)

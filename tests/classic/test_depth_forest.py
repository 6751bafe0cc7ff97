"""Depth-comparison features, mean shift, and the depth forest run end to end through the launcher."""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pytest
from conftest import ROOT, launch_cmd
from sklearn.cluster import MeanShift

import mlcv
from experiments import bodies_forest
from mlcv.classic.algorithms.depth_features import DepthFeatures, depth_feature, sample_pixels
from mlcv.classic.algorithms.mean_shift import distinct_modes, mean_shift, strongest_mode
from mlcv.classic.methods.depth_forest import part_iou
from mlcv.config import ConfigError

BG = 10.0


def _image():
    depth = np.full((1, 5, 6), BG, np.float32)
    depth[0, 1:4, 1:4] = 2.0
    depth[0, 2, 3] = 2.5
    depth[0, 1, 2] = 1.5
    depth[0, 3, 1] = 4.0
    return depth


def test_depth_feature_by_hand():
    depth = _image()
    p = np.array([[0, 2, 2]])  # D(p) = 2: an offset of 2 pixel-metres is one pixel
    offsets = np.array(
        [
            [0, 2, 0, 0],  # D(2, 3) - D(p) = 2.5 - 2
            [-2, 0, 0, 4],  # D(1, 2) - D(2, 4) = 1.5 - background
            [0, 20, -6, 0],  # column 12 and row -1 are off the image: background - background
            [0, -2.2, 2.2, 0],  # -1.1 and 1.1 pixels round to -1 and 1: D(2, 1) - D(3, 2) = 2 - 2
        ],
        np.float32,
    )
    np.testing.assert_allclose(depth_feature(depth, p, offsets, BG)[0], [0.5, 1.5 - BG, 0.0, 0.0])
    # At 4 m the same 4 pixel-metres is one pixel, not two: D(3, 2) - D(3, 1) = 2 - 4.
    q = np.array([[0, 3, 1]])
    np.testing.assert_allclose(depth_feature(depth, q, np.array([[0, 4, 0, 0]], np.float32), BG), [[-2.0]])
    # The feature source evaluates per-sample offsets (m, k, 4).
    src = DepthFeatures(depth, np.r_[p, q], max_offset=5.0, background=BG)
    vals = src.evaluate(np.array([0, 1]), np.array([[[0, 2, 0, 0]], [[0, 4, 0, 0]]], np.float32))
    np.testing.assert_allclose(vals, [[0.5], [-2.0]])
    cand = src.sample(np.random.default_rng(0), 3, 7)
    assert cand.shape == (3, 7, 4) and np.abs(cand).max() <= 5.0


def test_depth_feature_probes_stay_in_their_own_image():
    # Three images of constant depth 1, 2, 3 m: a probe reads its pixel's image, or background off the image.
    depth = np.stack([np.full((4, 5), d, np.float32) for d in (1.0, 2.0, 3.0)])
    pixels = np.array([[1, 3, 4], [1, 0, 0], [2, 3, 0]])
    offsets = np.array(
        [
            [0, 0, 0, 0],  # D(p) - D(p) = 0
            [0, 2.2, 0, 0],  # one column right: off the right edge for the first pixel
            [2.2, 0, -2.2, 0],  # one row down minus one row up
        ],
        np.float32,
    )
    want = [
        [0.0, BG - 2.0, BG - 2.0],  # (image 1, row 3, column 4): column 5 and row 4 are off the image
        [0.0, 0.0, 2.0 - BG],  # (image 1, row 0, column 0): the row above is off the image
        [0.0, 0.0, BG - 3.0],  # (image 2, row 3, column 0) at 3 m: 2.2 / 3 rounds to 1
    ]
    np.testing.assert_allclose(depth_feature(depth, pixels, offsets, BG), want)


def test_sample_pixels_stays_on_the_body():
    labels = np.zeros((3, 8, 8), np.uint8)
    labels[0, 2:5, 2:5] = 1  # 9 body pixels
    labels[1, 0, 0] = 2  # 1 body pixel
    pix = sample_pixels(labels, 4, np.random.default_rng(0))
    assert np.bincount(pix[:, 0], minlength=3).tolist() == [4, 1, 0]
    assert (labels[tuple(pix.T)] > 0).all()
    assert len({tuple(r) for r in pix}) == len(pix)


def test_part_iou_by_hand():
    labels = np.array([0, 1, 1, 2, 2, 2])
    pred = np.array([0, 1, 2, 2, 2, 1])
    # class 1: intersection 1, union 3; class 2: intersection 2, union 4; class 3 absent.
    np.testing.assert_allclose(part_iou(labels, pred, 4), [1.0, 1 / 3, 0.5, np.nan])


def test_mean_shift_two_clusters_by_hand():
    pts = np.array([[0.0], [0.1], [0.2], [5.0], [5.1]])
    modes, dens = mean_shift(pts, np.ones(5), pts, bandwidth=0.5)
    # Symmetric clusters far apart: their modes are their midpoints.
    np.testing.assert_allclose(modes[:, 0], [0.1, 0.1, 0.1, 5.05, 5.05], atol=1e-3)
    centres, _ = distinct_modes(modes, dens, 0.5)
    np.testing.assert_allclose(centres[:, 0], [0.1, 5.05], atol=1e-3)
    # The strongest mode is the three-point cluster, unless the two others weigh more.
    mode, _ = strongest_mode(pts, np.ones(5), 5, 0.5)
    assert mode[0] == pytest.approx(0.1, abs=1e-3)
    mode, _ = strongest_mode(pts, np.array([1, 1, 1, 3, 3.0]), 5, 0.5)
    assert mode[0] == pytest.approx(5.05, abs=1e-3)
    # Batched over sets, with zero-weight padding, it gives the same modes.
    batch = np.stack([pts, pts[::-1]])
    w = np.array([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0.0]])
    modes, _ = strongest_mode(batch, w, 5, 0.5)
    np.testing.assert_allclose(modes[:, 0], [0.1, 5.05], atol=1e-3)


def test_flat_mean_shift_matches_sklearn():
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(0, 0.3, (40, 2)), rng.normal([3, 1], 0.3, (25, 2)), rng.normal([0, 3], 0.2, (15, 2))]
    ref = MeanShift(bandwidth=0.8).fit(x).cluster_centers_
    modes, dens = mean_shift(x, np.ones(len(x)), x, 0.8, kernel="flat")
    centres, _ = distinct_modes(modes, dens, 0.8)
    assert centres.shape == ref.shape
    np.testing.assert_allclose(centres, ref, atol=1e-3)


def test_runlocal_through_launch_writes_the_workdir(tmp_path):
    wd = tmp_path / "run"
    args = ("--config", str(ROOT / "experiments" / "bodies_forest.py") + ":runlocal", f"--workdir={wd}")
    proc = subprocess.run(launch_cmd(*args), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.search(
        rf"^{re.escape(str(wd))}: test mIoU [\d.]+ % \(depth \d+\), centre error [\d.]+ m, wall time", proc.stdout, re.M
    )
    config = json.loads((wd / "config.json").read_text())
    assert config["task"] == "depth_forest" and config["forest"]["max_depth"] == 8
    summary = json.loads((wd / "summary.json").read_text())
    test = summary["test"]
    assert {f"iou/{p}" for p in ("head", "torso", "left_upper_arm", "right_lower_leg")} <= set(test)
    ious = [v for k, v in test.items() if k.startswith("iou/")]
    assert len(ious) == 10 and test["miou"] == pytest.approx(np.nanmean(ious))
    # Even this small forest beats guessing among 10 parts by far.
    assert test["miou"] > 0.3 and test["pixel_accuracy"] > 0.5
    assert 0 < test["centre_error_m"] < 0.5
    assert summary["fit"]["chosen_depth"] in (4, 8)
    records = [json.loads(ln) for ln in (wd / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [4, 8] and all("validation/miou" in r for r in records)
    assert (wd / "plots" / "parts.png").stat().st_size > 0
    # The same config in this process gives the same numbers.
    again = mlcv.run(bodies_forest.get_config("runlocal"), tmp_path / "again")
    assert again["test"] == pytest.approx(test, nan_ok=True)


def test_bad_value_is_a_config_error_before_writing(tmp_path):
    wd = tmp_path / "run"
    cfg = str(ROOT / "experiments" / "bodies_forest.py") + ":runlocal"
    proc = subprocess.run(
        launch_cmd("--config", cfg, "--config.forest.max_depth=0", f"--workdir={wd}"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "config.forest.max_depth" in errors[0], proc.stderr[-1000:]
    assert not wd.exists()


@pytest.mark.parametrize(
    "key, value",
    [
        ("select.depths", (4, 30)),
        ("forest.criterion", "log_loss"),
        ("features.max_offset", 0.0),
        ("joints.kernel", "epanechnikov"),
        ("data.num_test_images", 0),
    ],
)
def test_bad_values_name_their_key(tmp_path, key, value):
    config = bodies_forest.get_config("runlocal")
    group, name = key.split(".")
    config[group][name] = value
    with pytest.raises(ConfigError, match=re.escape(f"config.{key}")):
        mlcv.run(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_features_are_nearly_depth_invariant():
    # One sphere (radius 0.5) at 3 m and at 6 m: dividing the offsets by D(p) makes the probes land on
    # about the same point of the sphere (up to perspective and rounding), so the feature barely
    # changes; the same offsets in pixels instead land twice as far out on the far sphere.
    from mlcv.data.sources import bodies

    size, focal = 257, 200.0
    rays = bodies.camera_rays(size, focal)
    caps = (np.zeros((1, 0, 3)), np.zeros((1, 0, 3)), np.zeros((1, 0)))
    images = []
    for z in (3.0, 6.0):
        sphere = (np.array([[[0, 0, z]]]), np.full((1, 1, 3), 0.5), np.eye(3)[None, None])
        images.append(bodies.render(rays, sphere, caps)[0].reshape(1, size, size).astype(np.float32))
    centre = np.array([[0, 128, 128]])
    offsets = np.array([[0, 60.0, 0, 0], [50.0, -40.0, 0, 0]], np.float32)  # 24 and (20, -16) pixels at 2.5 m
    near, far = (depth_feature(im, centre, offsets, BG)[0] for im in images)
    assert (near > 0.05).all() and (near < 0.5).all()  # the probes stay on the sphere, behind p
    np.testing.assert_allclose(near, far, atol=0.02)
    d_near, d_far = images[0][0, 128, 128], images[1][0, 128, 128]
    same_pixels = depth_feature(images[1], centre, offsets * d_far / d_near, BG)[0]
    assert (np.abs(same_pixels - near) > 0.1).all()

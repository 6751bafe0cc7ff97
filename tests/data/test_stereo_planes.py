"""The rendered datasets ``stereo_planes`` and ``flow_layers``: splits, determinism, ranges, and that each view is
the other one sampled at the stored disparity or flow."""

from __future__ import annotations

import numpy as np
import pytest

from mlcv import data
from mlcv.data.sources import planes

SIZES = {"train": 400, "validation": 50, "test": 100}


def _sample(image: np.ndarray, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (N, H, W) at real positions ``(y, x)`` (N, H, W), bilinear, and where those lie inside."""
    n, h, w = image.shape
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    y, x = np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)
    y0, x0 = np.minimum(np.floor(y).astype(int), h - 2), np.minimum(np.floor(x).astype(int), w - 2)
    fy, fx = y - y0, x - x0
    i = np.arange(n)[:, None, None]
    top = (1 - fx) * image[i, y0, x0] + fx * image[i, y0, x0 + 1]
    bottom = (1 - fx) * image[i, y0 + 1, x0] + fx * image[i, y0 + 1, x0 + 1]
    return (1 - fy) * top + fy * bottom, inside


@pytest.fixture(scope="module")
def stereo() -> dict[str, np.ndarray]:
    return data.load_arrays("stereo_planes", "test")


@pytest.fixture(scope="module")
def flow() -> dict[str, np.ndarray]:
    return data.load_arrays("flow_layers", "test")


@pytest.mark.parametrize("name", ["stereo_planes", "flow_layers"])
def test_splits_shapes_and_dtypes(name):
    """Every split has its size, and its records the declared shapes and dtypes."""
    spec = data.get(name)
    for role, size in SIZES.items():
        src = data.source(spec, spec.splits[role])
        assert len(src) == size, role
        record = src[size - 1]
        for key, feature in spec.features.items():
            value = np.asarray(record[key])
            assert (value.shape, value.dtype.name) == (feature.shape, feature.dtype), (role, key)


def test_records_are_deterministic_and_seeded_per_split(stereo, flow):
    """Record i of a split is the scene of seed SEED_BASE[split] + i; splits differ."""
    again = planes.stereo_record(planes.STEREO_SEED_BASE["test"] + 3)
    for key, value in again.items():
        if key in ("focal_px", "baseline"):  # TFDS stores float scalars at float32 precision
            np.testing.assert_allclose(stereo[key][3], value, rtol=1e-7, err_msg=key)
        else:
            np.testing.assert_array_equal(stereo[key][3], value, err_msg=key)
    again = planes.flow_record(planes.FLOW_SEED_BASE["test"] + 5)
    for key, value in again.items():
        np.testing.assert_array_equal(flow[key][5], value, err_msg=key)
    first = {role: planes.stereo_record(planes.STEREO_SEED_BASE[role])["disparity"] for role in SIZES}
    assert not np.array_equal(first["train"], first["validation"])
    assert not np.array_equal(first["train"], first["test"])


def test_disparities_depths_slants_and_occlusions(stereo):
    """Disparities within 1-24 px; positive depths z = b f / d; slanted and fronto-parallel planes; occlusions."""
    for key in ("disparity", "disparity_right"):
        assert stereo[key].min() >= 1.0 and stereo[key].max() <= 24.0, key
    assert stereo["disparity"].max() > 15.0  # the near planes are there
    assert stereo["disparity_mask"].all() and stereo["disparity_right_mask"].all()
    np.testing.assert_allclose(stereo["focal_px"], 100.0, rtol=1e-7)
    np.testing.assert_allclose(stereo["baseline"], 0.1, rtol=1e-7)
    depth = stereo["baseline"][:, None, None] * stereo["focal_px"][:, None, None] / stereo["disparity"]
    assert depth.min() > 0.4 and depth.max() <= 10.0 + 1e-5
    # Within a plane the disparity changes by a slope (|b| <= 0.08 px per px); across an edge it jumps.
    dx = np.abs(np.diff(stereo["disparity"], axis=-1))
    slanted = (dx > 1e-3) & (dx < 0.1)
    assert slanted.mean() > 0.05  # slanted planes, and a slightly slanted background
    dy = np.abs(np.diff(stereo["disparity"], axis=-2))
    assert ((dy < 1e-6) & (stereo["disparity"][:, 1:] > 4.5)).any()  # fronto-parallel foreground planes
    for key, border in (("occlusion", 0), ("occlusion_right", -1)):
        occluded = stereo[key]
        assert 0.03 < occluded.mean() < 0.3, key
        assert occluded[:, :, border].all(), key  # the match of the outer column is outside the other view
        assert occluded[:, :, 20:-20].any(axis=(1, 2)).mean() > 0.5, key  # occlusions at planes' edges


def test_the_right_view_at_the_disparity_reproduces_the_left(stereo):
    """Left (y, x) is right (y, x - d) and right (y, x) is left (y, x + d_right) on non-occluded pixels."""
    left, right = (stereo[k][..., 0].astype(np.float64) for k in ("image", "image_right"))
    n, h, w = left.shape
    ys, xs = np.broadcast_to(np.mgrid[0:h, 0:w][:, None], (2, n, h, w)).astype(np.float64)
    for view, other, disparity, occluded in (
        (left, right, -stereo["disparity"], stereo["occlusion"]),
        (right, left, stereo["disparity_right"], stereo["occlusion_right"]),
    ):
        seen = ~occluded
        warped, inside = _sample(other, ys, xs + disparity)
        assert inside[seen].all()
        error = np.abs(warped - view)[seen].mean()
        wrong = np.abs(_sample(other, ys, xs + disparity + 1.5)[0] - view)[seen].mean()
        assert error < 1.0 and error < 0.2 * wrong, (error, wrong)
    # The two disparities agree: the right view's, at a visible left pixel's match, is the left's.
    back, _ = _sample(stereo["disparity_right"].astype(np.float64), ys, xs - stereo["disparity"])
    assert np.median(np.abs(back - stereo["disparity"])[~stereo["occlusion"]]) < 1e-3


def test_frame_two_at_the_flow_reproduces_frame_one(flow):
    """Frame 1 at p is frame 2 at p + flow(p) where flow_mask holds; moves are within the drawn motions."""
    first, second = (flow[k][..., 0].astype(np.float64) for k in ("image", "image_next"))
    n, h, w = first.shape
    ys, xs = np.broadcast_to(np.mgrid[0:h, 0:w][:, None], (2, n, h, w)).astype(np.float64)
    mask = flow["flow_mask"]
    assert 0.6 < mask.mean() < 0.99
    assert np.abs(flow["flow"]).max() < 16.0  # 6 px, plus 5 degrees and 5 % scaling about a layer's centre
    assert (np.abs(flow["flow"]) > 3.0).any(axis=-1).mean() > 0.1
    warped, inside = _sample(second, ys + flow["flow"][..., 1], xs + flow["flow"][..., 0])
    assert inside[mask].all()
    error = np.abs(warped - first)[mask].mean()
    still = np.abs(second - first)[mask].mean()
    assert error < 2.0 and error < 0.2 * still, (error, still)

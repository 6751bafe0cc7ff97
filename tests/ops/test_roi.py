"""RoIPool and RoIAlign by hand and against direct loops written from the papers' kernels; FPN levels."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from mlcv.ops import roi

roi_pool = jax.jit(roi.roi_pool, static_argnames=("output_size", "spatial_scale"))
roi_align = jax.jit(roi.roi_align, static_argnames=("output_size", "spatial_scale", "sampling_ratio", "aligned"))

MAP = np.array(
    [
        [1, 5, 2, 0],
        [3, 2, 8, 1],
        [0, 9, 4, 4],
        [7, 1, 3, 6],
    ],
    np.float32,
)
# Two channels: the map and its negative, whose bin maxima are minus the map's minima.
FEATURES = np.stack([MAP, -MAP], axis=-1)


def test_roi_pool_by_hand():
    rois = np.array(
        [
            [0, 0, 4, 4],  # 2 x 2 bins of 2 x 2 cells
            [0, 0, 3, 3],  # 3 cells in 2 bins: rows floor(0)..ceil(1.5) = 0-1 and floor(1.5)..ceil(3) = 1-2
            [10, 10, 12, 12],  # outside the map: empty bins give 0
        ],
        np.float32,
    )
    got = np.asarray(roi_pool(FEATURES, rois, output_size=(2, 2)))
    assert got.shape == (3, 2, 2, 2)
    np.testing.assert_array_equal(got[0, ..., 0], [[5, 8], [9, 6]])
    np.testing.assert_array_equal(got[0, ..., 1], [[-1, 0], [0, -3]])
    # bins rows/cols {0,1} x {0,1}, {0,1} x {1,2}, {1,2} x {0,1}, {1,2} x {1,2}: the middle row and column shared
    np.testing.assert_array_equal(got[1, ..., 0], [[5, 8], [9, 9]])
    np.testing.assert_array_equal(got[2], 0)


def test_roi_pool_rounds_scaled_corners_half_away_from_zero():
    # At scale 1/2, (1, 1, 7, 7) is (0.5, 0.5, 3.5, 3.5): C's round() gives cells 1..4 (round-half-even: 0..4).
    # 3 cells in 2 bins: rows 1-2 and 2-3, columns the same.
    got = np.asarray(roi_pool(FEATURES, np.array([[1, 1, 7, 7]], np.float32), (2, 2), spatial_scale=0.5))
    np.testing.assert_array_equal(got[0, ..., 0], [[9, 8], [9, 6]])


def _caffe_roi_pool(features, rois, ph, pw, scale):
    """The Caffe layer's loops, with its inclusive last pixel ``x2 = xmax - 1`` (integer boxes, scale 1)."""
    h, w, c = features.shape
    out = np.zeros((len(rois), ph, pw, c), np.float32)
    for r, (y1, x1, y2, x2) in enumerate(rois):
        y1, x1, y2, x2 = (int(math.floor(v * scale + 0.5)) for v in (y1, x1, y2 - 1, x2 - 1))
        # Bin sizes in float32, as the layer's Dtype.
        bin_h = np.float32(max(y2 - y1 + 1, 1)) / np.float32(ph)
        bin_w = np.float32(max(x2 - x1 + 1, 1)) / np.float32(pw)
        for i in range(ph):
            for j in range(pw):
                hs = min(max(math.floor(np.float32(i) * bin_h) + y1, 0), h)
                he = min(max(math.ceil(np.float32(i + 1) * bin_h) + y1, 0), h)
                ws = min(max(math.floor(np.float32(j) * bin_w) + x1, 0), w)
                we = min(max(math.ceil(np.float32(j + 1) * bin_w) + x1, 0), w)
                if he > hs and we > ws:
                    out[r, i, j] = features[hs:he, ws:we].max(axis=(0, 1))
    return out


def test_roi_pool_matches_the_caffe_loops_on_a_batch():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(2, 9, 11, 3)).astype(np.float32)
    y0, x0 = rng.integers(-2, 8, (2, 12)), rng.integers(-2, 10, (2, 12))
    rois = np.stack([y0, x0, y0 + rng.integers(1, 9, (2, 12)), x0 + rng.integers(1, 9, (2, 12))], -1)
    rois = rois.astype(np.float32)
    got = np.asarray(jax.jit(jax.vmap(lambda f, r: roi.roi_pool(f, r, (3, 2))))(feats, rois))
    for b in range(2):
        np.testing.assert_array_equal(got[b], _caffe_roi_pool(feats[b], rois[b], 3, 2, 1.0))


def test_roi_align_on_a_ramp_is_the_ramp_at_bin_centres():
    ramp = (10 * np.arange(10)[:, None] + np.arange(10)[None, :]).astype(np.float32)[..., None]  # f = 10 y + x
    rois = np.array([[2, 2, 6, 6], [3, 1, 8, 7]], np.float32)
    got = np.asarray(roi_align(ramp, rois, output_size=(2, 2)))[..., 0]
    # aligned: cell k sits at k + 0.5, so bin centres (3, 3), (3, 5), (5, 3), (5, 5) are cells 2.5 and 4.5
    np.testing.assert_allclose(got[0], [[27.5, 29.5], [47.5, 49.5]], rtol=1e-6)
    # (3, 1, 8, 7): bin centres y 4.25, 6.75 and x 2.5, 5.5, less half a cell
    np.testing.assert_allclose(got[1], [[37.5 + 2, 37.5 + 5], [62.5 + 2, 62.5 + 5]], rtol=1e-6)
    # aligned=False: no half-cell shift, bin centres read as cell coordinates
    got = np.asarray(roi_align(ramp, rois[:1], output_size=(2, 2), aligned=False))[0, ..., 0]
    np.testing.assert_allclose(got, [[33, 35], [53, 55]], rtol=1e-6)
    # spatial_scale maps image coordinates to the map: the same roi in a 4x larger image
    got = np.asarray(roi_align(ramp, rois * 4, output_size=(2, 2), spatial_scale=0.25))[..., 0]
    np.testing.assert_allclose(got[0], [[27.5, 29.5], [47.5, 49.5]], rtol=1e-6)


def test_roi_align_bilinear_and_border_by_hand():
    f = np.array([[1, 2], [3, 5]], np.float32)[..., None]  # not a plane: 1 + 2y + x + xy on the cells
    rois = np.array(
        [
            [1, 1, 1.5, 2],  # one sample at (1.25, 1.5), cell coordinates (0.75, 1): 2 * 0.25 + 5 * 0.75
            [0.5, 0.5, 1.5, 1.5],  # samples at cells (0.25 | 0.75)^2: mean of 1 + 2y + x + xy = 2.75
            [-1.5, 0.5, -0.5, 1.5],  # one sample at cells (-1.5, 0.5): beyond -1, so 0
            [-1, 0.5, 0, 1.5],  # at (-1, 0.5): clamped to row 0, (1 + 2) / 2
            [2, 0.5, 3, 1.5],  # at (2, 0.5): row H = 2 still counts, clamped to row 1: (3 + 5) / 2
        ],
        np.float32,
    )
    got = np.array(roi_align(f, rois, output_size=(1, 1), sampling_ratio=1))[:, 0, 0, 0]
    got[1] = np.asarray(roi_align(f, rois[1:2], output_size=(1, 1), sampling_ratio=2))[0, 0, 0, 0]
    np.testing.assert_allclose(got, [4.25, 2.75, 0, 1.5, 4], rtol=1e-6)


def _bilinear(f, y, x):
    h, w = f.shape[:2]
    if y < -1 or y > h or x < -1 or x > w:
        return np.zeros(f.shape[2:])
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
    if y0 >= h - 1:
        y0 = y1 = h - 1
        y = float(y0)
    if x0 >= w - 1:
        x0 = x1 = w - 1
        x = float(x0)
    ly, lx = y - y0, x - x0
    return (1 - ly) * (1 - lx) * f[y0, x0] + (1 - ly) * lx * f[y0, x1] + ly * (1 - lx) * f[y1, x0] + ly * lx * f[y1, x1]


def _roi_align_loops(f, rois, ph, pw, scale, ratio, aligned):
    """Mask R-CNN's RoIAlign as a direct loop over bins and samples (the reference kernel's arithmetic)."""
    out = np.zeros((len(rois), ph, pw, f.shape[2]))
    for r, box in enumerate(rois.astype(np.float64)):
        y0, x0, y1, x1 = box * scale - (0.5 if aligned else 0.0)
        rh, rw = (y1 - y0, x1 - x0) if aligned else (max(y1 - y0, 1.0), max(x1 - x0, 1.0))
        for i in range(ph):
            for j in range(pw):
                for a in range(ratio):
                    for b in range(ratio):
                        y = y0 + i * rh / ph + (a + 0.5) * rh / ph / ratio
                        x = x0 + j * rw / pw + (b + 0.5) * rw / pw / ratio
                        out[r, i, j] += _bilinear(f, y, x) / ratio**2
    return out


@pytest.mark.parametrize(("ratio", "aligned"), [(1, True), (2, True), (3, False)])
def test_roi_align_matches_the_reference_loops_on_a_batch(ratio, aligned):
    rng = np.random.default_rng(ratio)
    feats = rng.normal(size=(2, 7, 9, 2)).astype(np.float32)
    yx = rng.uniform(-6, 34, (2, 10, 2))
    rois = np.concatenate([yx, yx + rng.uniform(0.5, 20, (2, 10, 2))], -1).astype(np.float32)
    fn = jax.jit(jax.vmap(lambda f, r: roi.roi_align(f, r, (3, 2), 0.25, ratio, aligned)))
    got = np.asarray(fn(feats, rois))
    for b in range(2):
        ref = _roi_align_loops(feats[b].astype(np.float64), rois[b], 3, 2, 0.25, ratio, aligned)
        np.testing.assert_allclose(got[b], ref, atol=1e-5)


def test_roi_align_has_gradients_and_rejects_adaptive_sampling():
    rois = np.array([[0.5, 0.5, 3, 3.5]], np.float32)
    grad = jax.jit(jax.grad(lambda f: roi.roi_align(f, rois, (2, 2)).sum()))(FEATURES)
    # Each output is a weighted mean, so the gradient sums to the number of outputs per channel.
    np.testing.assert_allclose(np.asarray(grad).sum(axis=(0, 1)), [4, 4], rtol=1e-5)
    with pytest.raises(ValueError, match="sampling_ratio"):
        roi.roi_align(FEATURES, rois, (2, 2), sampling_ratio=0)


def test_fpn_level():
    sides = np.array([224, 112, 448, 896, 56, 28, 223, 0], np.float32)
    boxes = np.stack([np.zeros(8), np.zeros(8), sides, sides], -1)
    # floor(4 + log2(side / 224)) clipped to 2..5; 223 is just under 224 so P3; an empty box P2
    fpn_level = jax.jit(roi.fpn_level, static_argnames=("k0", "min_level", "max_level"))
    np.testing.assert_array_equal(fpn_level(boxes), [4, 3, 5, 5, 2, 2, 3, 2])
    # sqrt(wh): a 448 x 112 box is as large as 224 x 224; batch axes pass through
    np.testing.assert_array_equal(fpn_level(np.array([[[0, 0, 448, 112]]], np.float32)), [[4]])
    np.testing.assert_array_equal(fpn_level(boxes, min_level=3, max_level=6, k0=5)[:3], [5, 4, 6])

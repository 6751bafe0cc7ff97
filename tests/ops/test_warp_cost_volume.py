"""Warping against NumPy slicing and OpenCV's remap; cost volumes against explicit loops; soft argmin by hand."""

from __future__ import annotations

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlcv.ops import cost_volume as cv
from mlcv.ops import warp

RNG = np.random.default_rng(0)
B, H, W, C = 2, 9, 13, 3


def _images(seed: int = 0, c: int = C) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (B, H, W, c)).astype(np.float32)


def test_integer_disparity_is_a_slice_both_directions():
    img = _images()
    for d in (0, 1, 4):
        disp = np.full((B, H, W), float(d), np.float32)
        out, valid = warp.warp_by_disparity(img, disp, target="left")
        np.testing.assert_allclose(np.asarray(out)[:, :, d:], img[:, :, : W - d], atol=1e-6)
        # Left of x = d the sample is clamped to column 0 and marked invalid.
        np.testing.assert_allclose(np.asarray(out)[:, :, :d], np.repeat(img[:, :, :1], d, axis=2), atol=1e-6)
        assert not np.asarray(valid)[:, :, :d].any() and np.asarray(valid)[:, :, d:].all()
        out_r, valid_r = warp.warp_by_disparity(img, disp[..., None], target="right")
        np.testing.assert_allclose(np.asarray(out_r)[:, :, : W - d], img[:, :, d:], atol=1e-6)
        assert np.asarray(valid_r)[:, :, : W - d].all() and not np.asarray(valid_r)[:, :, W - d :].any()


def test_integer_flow_is_a_slice():
    img = _images(1)
    u, v = 2, -3
    flow = np.broadcast_to(np.array([u, v], np.float32), (B, H, W, 2))
    out, valid = warp.warp_by_flow(img, flow)
    np.testing.assert_allclose(np.asarray(out)[:, 3:, : W - 2], img[:, :-3, 2:], atol=1e-6)
    expected = np.zeros((H, W), bool)
    expected[3:, : W - 2] = True
    assert (np.asarray(valid) == expected).all()


def _remap(img: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    return cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def test_fractional_fields_match_opencv_remap():
    # OpenCV's remap quantises float maps to 1/32 pixel (INTER_TAB_SIZE); fields on that grid make
    # its interpolation exact, so the comparison tests our weights, not OpenCV's rounding.
    img = _images(2)
    disp = (RNG.integers(0, 5 * 32, (B, H, W)) / 32).astype(np.float32)
    flow = (RNG.integers(-3 * 32, 3 * 32, (B, H, W, 2)) / 32).astype(np.float32)
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    out_d, valid_d = warp.warp_by_disparity(img, disp)
    out_f, valid_f = warp.warp_by_flow(img, flow)
    for b in range(B):
        ref_d = _remap(img[b], xs - disp[b], ys)
        ref_f = _remap(img[b], xs + flow[b, ..., 0], ys + flow[b, ..., 1])
        vd, vf = np.asarray(valid_d[b]), np.asarray(valid_f[b])
        assert vd.sum() > H * W // 2 and vf.sum() > H * W // 3
        np.testing.assert_allclose(np.asarray(out_d[b])[vd], ref_d[vd], atol=1e-4)
        np.testing.assert_allclose(np.asarray(out_f[b])[vf], ref_f[vf], atol=1e-4)
        # The clamped border reads the nearest edge pixel, as BORDER_REPLICATE does.
        np.testing.assert_allclose(np.asarray(out_d[b]), ref_d, atol=1e-4)


def test_gradients_wrt_disparity_and_flow_are_finite_and_match_the_slope():
    img = _images(3)
    disp = jnp.asarray(RNG.uniform(0, 6, (B, H, W)), jnp.float32)

    def loss(d):
        return jnp.sum(warp.warp_by_disparity(img, d)[0])

    g = np.asarray(jax.grad(loss)(disp))
    assert np.isfinite(g).all() and np.abs(g).sum() > 0
    # Inside an interpolation interval the warp is linear in d: d out[y, x] / d d = right[x0] - right[x0 + 1].
    x = np.arange(W) - np.asarray(disp)
    inner = (x > 0) & (np.abs(x - np.round(x)) > 1e-3)
    x0 = np.floor(np.clip(x, 0, W - 1)).astype(int)
    x1 = np.minimum(x0 + 1, W - 1)
    bb, yy = np.meshgrid(np.arange(B), np.arange(H), indexing="ij")
    slope = (img[bb[..., None], yy[..., None], x0] - img[bb[..., None], yy[..., None], x1]).sum(-1)
    np.testing.assert_allclose(g[inner], slope[inner], atol=1e-5)
    flow = jnp.asarray(RNG.uniform(-2, 2, (B, H, W, 2)), jnp.float32)
    gf = jax.grad(lambda f: jnp.sum(warp.warp_by_flow(img, f)[0] ** 2))(flow)
    assert np.isfinite(np.asarray(gf)).all()


def test_correlation_1d_matches_a_loop():
    left, right = _images(4, 5), _images(5, 5)
    max_d = 4
    got = np.asarray(cv.correlation_1d(left, right, max_d))
    ref = np.zeros((B, H, W, max_d + 1), np.float32)
    for d in range(max_d + 1):
        for x in range(d, W):
            ref[:, :, x, d] = (left[:, :, x] * right[:, :, x - d]).mean(-1)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=1e-6)


@pytest.mark.parametrize("max_disp, stride", [(2, 1), (4, 2), (3, 2)])
def test_correlation_2d_matches_a_loop(max_disp, stride):
    f1, f2 = _images(6, 4), _images(7, 4)
    got = np.asarray(cv.correlation_2d(f1, f2, max_disp, stride))
    k = max_disp // stride
    ref = np.zeros((B, H, W, (2 * k + 1) ** 2), np.float32)
    ch = 0
    for dy in range(-k * stride, k * stride + 1, stride):
        for dx in range(-k * stride, k * stride + 1, stride):
            for y in range(H):
                for x in range(W):
                    if 0 <= y + dy < H and 0 <= x + dx < W:
                        ref[:, y, x, ch] = (f1[:, y, x] * f2[:, y + dy, x + dx]).mean(-1)
            ch += 1
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=1e-6)


def test_concat_cost_volume_matches_a_loop():
    left, right = _images(8, 2), _images(9, 2)
    max_d = 3
    got = np.asarray(cv.concat_cost_volume(left, right, max_d))
    ref = np.zeros((B, max_d + 1, H, W, 4), np.float32)
    for d in range(max_d + 1):
        for x in range(W):
            if x - d >= 0:
                ref[:, d, :, x, :2] = left[:, :, x]
                ref[:, d, :, x, 2:] = right[:, :, x - d]
    assert got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)


def test_soft_argmin_by_hand_and_tends_to_argmin():
    costs = np.array([1.0, 0.0, 2.0], np.float32)
    p = np.exp(-costs) / np.exp(-costs).sum()
    assert float(cv.soft_argmin(jnp.asarray(costs))) == pytest.approx(0 * p[0] + 1 * p[1] + 2 * p[2], abs=1e-6)
    # Along axis 1 of a [B, D, H, W] volume (GC-Net's layout after its 3-D convolutions); every pixel's best
    # cost is 0.2 below its second best, so scaling by 100 leaves the others e^-20 of the weight.
    rng = np.random.default_rng(10)
    vol = rng.uniform(0.2, 1.0, (B, 6, H, W)).astype(np.float32)
    wta = rng.integers(0, 6, (B, H, W))
    np.put_along_axis(vol, wta[:, None], 0.0, axis=1)
    errors = [float(np.abs(np.asarray(cv.soft_argmin(jnp.asarray(vol * s), axis=1)) - wta).max()) for s in (1, 10, 100)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-3

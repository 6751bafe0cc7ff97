"""Monodepth's losses: SSIM against scikit-image, the rest against hand computations and their defining cases."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from mlcv.losses import depth

B, H, W, C = 2, 24, 28, 3


def _pair(seed: int, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (B, H, W, C))
    y = np.clip(0.6 * x + 0.4 * rng.uniform(0, 1, x.shape), 0, 1)  # correlated, so SSIM is far from 0 and 1
    return (scale * x).astype(np.float32), (scale * y).astype(np.float32)


@pytest.mark.parametrize("data_range", [1.0, 255.0])
def test_ssim_gaussian_matches_skimage(data_range):
    x, y = _pair(0, data_range)
    got = np.asarray(depth.ssim_gaussian(x, y, sigma=1.5, data_range=data_range))
    assert got.shape == (B, H - 10, W - 10, C)
    for b in range(B):
        ref = structural_similarity(
            x[b].astype(np.float64),
            y[b].astype(np.float64),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=data_range,
            channel_axis=-1,
        )
        assert got[b].mean() == pytest.approx(ref, abs=1e-4)


def test_ssim_3x3_matches_skimage_uniform_window():
    # Monodepth's 3 x 3 average pool is skimage's uniform window of size 3 with population statistics.
    x, y = _pair(1)
    got = np.asarray(depth.ssim(x, y))
    assert got.shape == (B, H - 2, W - 2, C)
    for b in range(B):
        ref = structural_similarity(
            x[b], y[b], win_size=3, use_sample_covariance=False, data_range=1.0, channel_axis=-1
        )
        assert got[b].mean() == pytest.approx(ref, abs=1e-4)


def test_appearance_loss_zero_for_identical_and_by_hand():
    x, _ = _pair(2)
    assert float(depth.appearance_loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    # A 3 x 3 grey image: one SSIM window, so the loss is written out from the definition.
    a = np.array([[0.1, 0.5, 0.9], [0.2, 0.4, 0.6], [0.8, 0.3, 0.7]])
    r = np.array([[0.2, 0.5, 0.7], [0.1, 0.6, 0.6], [0.9, 0.2, 0.4]])
    mu_a, mu_r = a.mean(), r.mean()
    var_a, var_r = ((a - mu_a) ** 2).mean(), ((r - mu_r) ** 2).mean()
    cov = ((a - mu_a) * (r - mu_r)).mean()
    c1, c2 = 0.01**2, 0.03**2
    s = (2 * mu_a * mu_r + c1) * (2 * cov + c2) / ((mu_a**2 + mu_r**2 + c1) * (var_a + var_r + c2))
    expected = 0.85 * (1 - s) / 2 + 0.15 * np.abs(a - r).mean()
    got = depth.appearance_loss(a[None, :, :, None], r[None, :, :, None], alpha=0.85)
    assert float(got) == pytest.approx(expected, abs=1e-6)


def test_smoothness_zero_for_constant_and_lower_on_image_edges():
    rng = np.random.default_rng(3)
    image = rng.uniform(0, 0.05, (B, H, W, C)).astype(np.float32)
    assert float(depth.smoothness_loss(np.full((B, H, W), 7.0, np.float32), image)) == 0.0
    disp = np.full((B, H, W), 2.0, np.float32)
    disp[:, :, 12:] = 6.0  # a depth edge between columns 11 and 12
    aligned, shifted = image.copy(), image.copy()
    aligned[:, :, 12:] += 0.9  # an image edge at the same place
    shifted[:, :, 20:] += 0.9  # an image edge elsewhere
    on_edge = float(depth.smoothness_loss(disp, aligned))
    off_edge = float(depth.smoothness_loss(disp, shifted))
    assert on_edge < 0.5 * off_edge
    # Mean normalisation (Monodepth2) makes the loss invariant to the scale of the disparities.
    a = depth.smoothness_loss(disp, shifted, normalise=True)
    b = depth.smoothness_loss(3.0 * disp, shifted, normalise=True)
    assert float(a) == pytest.approx(float(b), rel=1e-5)


def test_left_right_consistency_zero_for_fronto_parallel_and_positive_otherwise():
    d = np.full((B, H, W), 3.0, np.float32)
    assert float(depth.left_right_consistency(d, d)) == pytest.approx(0.0, abs=1e-7)
    assert float(depth.left_right_consistency(d, d, view="right")) == pytest.approx(0.0, abs=1e-7)
    # A near surface (d = 4) from left column 14 in front of a far one (d = 2): the near region starts at
    # column 10 in the right view. Every right pixel is seen by the left camera, so the right term is 0;
    # left columns 12 and 13 (far surface) map to right columns 10 and 11, hidden by the near surface:
    # an occlusion, where the left term reads |2 - 4| in 2 of the W columns.
    left = np.where(np.arange(W) >= 14, 4.0, 2.0).astype(np.float32) * np.ones((B, H, 1), np.float32)
    right = np.where(np.arange(W) >= 10, 4.0, 2.0).astype(np.float32) * np.ones((B, H, 1), np.float32)
    assert float(depth.left_right_consistency(left, right, view="right")) == pytest.approx(0.0, abs=1e-7)
    assert float(depth.left_right_consistency(left, right)) == pytest.approx(2.0 * 2 / W, rel=1e-5)
    assert float(depth.left_right_consistency(d, d + 1.0)) == pytest.approx(1.0, abs=1e-6)
    # Width-normalised disparities warp by d * W but are compared in width units.
    assert float(depth.left_right_consistency(d / W, (d + 1.0) / W, normalised=True)) == pytest.approx(
        1.0 / W, rel=1e-5
    )


def _stereo_scene(d: int) -> tuple[np.ndarray, np.ndarray]:
    """A textured fronto-parallel pair at disparity ``d``: ``right[x - d] = left[x]``."""
    wide = np.random.default_rng(4).uniform(0, 1, (B, H, W + d, C)).astype(np.float32)
    return wide[:, :, :W], wide[:, :, d:]


def test_monodepth_loss_prefers_the_true_disparity_and_has_finite_gradients():
    # An even disparity, so that the half-resolution pair (every other pixel) is exactly at disparity 2.
    left, right = _stereo_scene(4)
    half = [im[:, ::2, ::2] for im in (left, right)]

    def loss(dl, dr):
        disps_l = [dl, dl[:, ::2, ::2] / 2]
        disps_r = [dr, dr[:, ::2, ::2] / 2]
        return depth.monodepth_loss([left, half[0]], [right, half[1]], disps_l, disps_r)

    # One compiled function for every call below: compilation, not the arithmetic, is the test's cost.
    value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))
    true = jnp.full((B, H, W), 4.0)
    (total, terms), _ = value_and_grad(true, true)
    (wrong, _), _ = value_and_grad(true + 1.5, true + 1.5)
    assert float(total) < float(wrong)
    assert float(terms["smoothness"]) == 0.0 and float(terms["left_right"]) == pytest.approx(0.0, abs=1e-6)
    expected = terms["appearance"] + 0.1 * terms["smoothness"] + terms["left_right"]
    assert float(total) == pytest.approx(float(expected), rel=1e-6)
    noisy = true + jnp.asarray(np.random.default_rng(5).uniform(-1, 1, (B, H, W)), jnp.float32)
    _, grads = value_and_grad(noisy, noisy)
    for g in grads:
        assert np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).sum() > 0

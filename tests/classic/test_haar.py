"""Haar features: the enumeration count, every type against direct numpy sums, and the scaled detector."""

from __future__ import annotations

import numpy as np
import pytest

from mlcv.classic.algorithms import haar
from mlcv.ops.integral import integral_image, window_mean_std


def _direct(features: haar.HaarFeatures, windows: np.ndarray) -> np.ndarray:
    """Feature values by slicing the pixels of each rectangle: no integral image."""
    out = np.zeros((len(features), len(windows)))
    for f in range(len(features)):
        for (x, y, w, h), weight in zip(features.rects[f], features.weights[f], strict=True):
            if weight:
                out[f] += weight * windows[:, y : y + h, x : x + w].sum(axis=(1, 2))
    return out


def test_a_24x24_window_holds_the_known_162336_features():
    f = haar.enumerate_features(24)
    # The count quoted for Viola-Jones' five feature types in a 24x24 window.
    assert len(f) == 162_336
    counts = {t: int((f.kind == i).sum()) for i, t in enumerate(haar.TYPES)}
    assert counts == {"two_h": 43_200, "two_v": 43_200, "three_h": 27_600, "three_v": 27_600, "four": 20_736}
    # every rectangle inside the window, weights balanced over the area
    x1 = f.rects[..., 0] + f.rects[..., 2]
    y1 = f.rects[..., 1] + f.rects[..., 3]
    assert x1.max() <= 24 and y1.max() <= 24 and f.rects.min() >= 0
    np.testing.assert_array_equal((f.weights * f.rects[..., 2] * f.rects[..., 3]).sum(1), 0)


def test_steps_thin_the_enumeration():
    full, thin = haar.enumerate_features(12), haar.enumerate_features(12, position_step=2, size_step=2)
    assert 0 < len(thin) < len(full) / 3
    assert (thin.rects[:, 0, :2] % 2 == 0).all()  # feature origins on the position grid


@pytest.mark.parametrize("kind", haar.TYPES)
def test_every_type_matches_direct_sums_on_random_windows(kind):
    rng = np.random.default_rng(0)
    windows = rng.random((7, 10, 10))
    f = haar.enumerate_features(10, (kind,))
    ii, std = haar.window_stats(windows)
    expected = _direct(f, windows)
    np.testing.assert_allclose(haar.feature_values(f, ii), expected, atol=1e-10)
    np.testing.assert_allclose(haar.feature_values(f, ii, std), expected / windows.std(axis=(1, 2)), atol=1e-9)


def test_values_in_an_image_equal_values_on_the_cut_windows():
    rng = np.random.default_rng(1)
    image = rng.random((30, 40))
    f = haar.enumerate_features(12, position_step=3, size_step=2)
    x0, y0 = np.array([0, 5, 28, 13]), np.array([0, 17, 18, 9])
    ii, ii2 = integral_image(image, pad=True), integral_image(image**2, pad=True)
    _, std = window_mean_std(ii, ii2, x0, y0, x0 + 12, y0 + 12)
    got = haar.values_at(f, ii, x0, y0, 1.0, std)
    cut = np.stack([image[b : b + 12, a : a + 12] for a, b in zip(x0, y0, strict=True)])
    np.testing.assert_allclose(got, (_direct(f, cut) / cut.std(axis=(1, 2))).T, atol=1e-9)


def test_scaled_detector_on_a_2x_image_equals_the_detector_on_the_original():
    rng = np.random.default_rng(2)
    image = rng.random((20, 26))
    big = np.kron(image, np.ones((2, 2)))  # every pixel doubled in each direction
    f = haar.enumerate_features(8)
    x0, y0 = np.array([0, 3, 18, 7]), np.array([0, 12, 5, 9])
    ii, ii2 = integral_image(image, pad=True), integral_image(image**2, pad=True)
    _, std = window_mean_std(ii, ii2, x0, y0, x0 + 8, y0 + 8)
    jj, jj2 = integral_image(big, pad=True), integral_image(big**2, pad=True)
    _, std2 = window_mean_std(jj, jj2, 2 * x0, 2 * y0, 2 * x0 + 16, 2 * y0 + 16)
    np.testing.assert_allclose(std2, std, rtol=1e-9)
    np.testing.assert_allclose(
        haar.values_at(f, jj, 2 * x0, 2 * y0, 2.0, std2), haar.values_at(f, ii, x0, y0, 1.0, std), atol=1e-9
    )


def test_scaled_detector_at_a_fractional_scale_is_close_and_stays_blind_to_brightness():
    # A smooth image resized by 1.5 with area averaging (OpenCV as the reference resampler): the features
    # scaled by 1.5 see nearly the same values; rounding the rectangles is the only difference.
    cv2 = pytest.importorskip("cv2")
    yy, xx = np.mgrid[0:40, 0:40] / 40.0
    image = np.sin(3 * xx) * np.cos(2 * yy) + xx
    big = cv2.resize(image, (60, 60), interpolation=cv2.INTER_LINEAR)
    f = haar.enumerate_features(12, ("two_h", "two_v", "four"), position_step=6, size_step=3)
    ii, ii2 = integral_image(image, pad=True), integral_image(image**2, pad=True)
    jj, jj2 = integral_image(big, pad=True), integral_image(big**2, pad=True)
    _, s1 = window_mean_std(ii, ii2, np.array([10]), np.array([8]), np.array([22]), np.array([20]))
    _, s2 = window_mean_std(jj, jj2, np.array([15]), np.array([12]), np.array([33]), np.array([30]))
    small = haar.values_at(f, ii, np.array([10]), np.array([8]), 1.0, s1)[0]
    scaled = haar.values_at(f, jj, np.array([15]), np.array([12]), 1.5, s2)[0]
    assert np.abs(scaled - small).max() < 0.1 * np.abs(small).max()
    # the re-balanced rounded rectangles still give zero on a constant image
    flat = integral_image(np.full((50, 50), 0.7), pad=True)
    np.testing.assert_allclose(haar.values_at(f, flat, np.array([3]), np.array([4]), 1.37, np.ones(1)), 0, atol=1e-9)

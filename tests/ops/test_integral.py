"""Integral images: the course's worked example, rectangle sums against numpy slicing, window statistics."""

from __future__ import annotations

import numpy as np
import pytest

from mlcv.ops.integral import integral_image, rect_sum, window_mean_std


def test_worked_example_of_the_course():
    # The course's table. It is the integral image of rows 3 2 6 3 / 5 4 1 3 / 2 1 3 3: the brief quotes the
    # second row as 5 4 1 4, but the table's 27 = 3 + 2 + 6 + 3 + 5 + 4 + 1 + x forces x = 3 (and 36 = 27 + 9).
    table = np.array([[3, 5, 11, 14], [8, 14, 21, 27], [10, 17, 27, 36]])
    image = np.array([[3, 2, 6, 3], [5, 4, 1, 3], [2, 1, 3, 3]])
    np.testing.assert_array_equal(integral_image(image), table)
    # With the quoted 4 instead, only the last column changes, by one from the second row down (hand sums).
    quoted = image.copy()
    quoted[1, 3] = 4
    np.testing.assert_array_equal(integral_image(quoted), table + np.array([[0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1]]))
    padded = integral_image(image, pad=True)
    assert padded.shape == (4, 5)
    np.testing.assert_array_equal(padded[1:, 1:], table)
    assert not padded[0].any() and not padded[:, 0].any()
    # four look-ups: the 2x2 block 4 1 / 1 3 is 27 - 11 - 10 + 3 = 9
    assert rect_sum(padded, 1, 1, 3, 3) == 27 - 11 - 10 + 3 == 4 + 1 + 1 + 3


def test_equals_the_courses_recurrence_eq_46():
    """The course's eq. 46, ii(x, y) = i(x, y) + ii(x - 1, y) + ii(x, y - 1) - ii(x - 1, y - 1), run pixel by
    pixel with ii = 0 outside the image, gives the table mlcv computes as two cumulative sums."""
    image = np.random.default_rng(3).integers(0, 256, size=(7, 9))
    ii = np.zeros((7, 9), np.int64)
    for y in range(7):
        for x in range(9):
            left = ii[y, x - 1] if x else 0
            up = ii[y - 1, x] if y else 0
            diag = ii[y - 1, x - 1] if x and y else 0
            ii[y, x] = image[y, x] + left + up - diag
    np.testing.assert_array_equal(integral_image(image), ii)


def test_rectangle_sums_match_numpy_slicing_for_every_rectangle():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(2, 7, 9))
    ii = integral_image(image, pad=True)
    y0, x0, y1, x1 = np.meshgrid(np.arange(8), np.arange(10), np.arange(8), np.arange(10), indexing="ij")
    ok = (y1 > y0) & (x1 > x0)
    y0, x0, y1, x1 = y0[ok], x0[ok], y1[ok], x1[ok]
    got = rect_sum(ii, x0, y0, x1, y1)
    expected = np.array([[im[a:b, c:d].sum() for a, b, c, d in zip(y0, y1, x0, x1, strict=True)] for im in image])
    np.testing.assert_array_equal(got, expected)


def test_float_images_and_window_mean_std_match_numpy():
    rng = np.random.default_rng(1)
    image = rng.random((20, 30))
    ii, ii2 = integral_image(image, pad=True), integral_image(image**2, pad=True)
    np.testing.assert_allclose(integral_image(image)[-1, -1], image.sum())
    x0, y0, x1, y1 = np.array([0, 3, 10]), np.array([0, 5, 2]), np.array([30, 11, 24]), np.array([20, 17, 9])
    mean, std = window_mean_std(ii, ii2, x0, y0, x1, y1)
    for k in range(3):
        patch = image[y0[k] : y1[k], x0[k] : x1[k]]
        assert mean[k] == pytest.approx(patch.mean(), rel=1e-12)
        assert std[k] == pytest.approx(patch.std(), rel=1e-9)
    # a flat window has std 0, floored so that dividing by it stays finite
    _, flat = window_mean_std(
        integral_image(np.ones((4, 4)), pad=True), integral_image(np.ones((4, 4)), pad=True), 0, 0, 4, 4, min_std=0.5
    )
    assert flat == 0.5


def test_uint8_images_are_summed_in_int64():
    """Four pixels of 255 sum to 1020 (by hand), past uint8's 255: the default accumulator is int64, not uint8."""
    ii = integral_image(np.full((2, 2), 255, np.uint8))
    np.testing.assert_array_equal(ii, [[255, 510], [510, 1020]])
    assert ii.dtype == np.int64
    assert rect_sum(integral_image(np.full((2, 2), 255, np.uint8), pad=True), 0, 0, 2, 2) == 4 * 255


def test_float32_images_are_summed_in_float64():
    """Ones beside a pixel of 1e8 are not lost: float32 spaces its values 8 apart there (1e8 + 1 rounds to 1e8),
    float64 holds every integer below 2**53. Expected sums by exact integer arithmetic: 1e8 plus the count of ones
    above and to the left of each pixel."""
    image = np.ones((2, 4), np.float32)
    image[0, 0] = 1e8  # exact in float32: 1e8 = 2**8 * 390625
    assert np.float32(1e8) + np.float32(1) == np.float32(1e8)  # what a float32 accumulator would do
    ii = integral_image(image, pad=True)
    big = 100_000_000
    np.testing.assert_array_equal(ii[1:, 1:], [[big, big + 1, big + 2, big + 3], [big + 1, big + 3, big + 5, big + 7]])
    assert ii.dtype == np.float64
    # the 2 x 3 block of ones to the right of the big pixel, from four look-ups of sums near 1e8: 6 exactly
    assert rect_sum(ii, 1, 0, 4, 2) == 6

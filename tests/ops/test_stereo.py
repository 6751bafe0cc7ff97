"""Block-matching stereo ops against direct NumPy, OpenCV's matchTemplate and hand calculations."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage

from mlcv.data.sources import stereo as stereo_data
from mlcv.ops import stereo as ops


def _texture(seed: int, h: int, w: int, sigma: float = 0.0) -> np.ndarray:
    x = np.random.default_rng(seed).uniform(0, 255, (h, w))
    return ndimage.gaussian_filter(x, sigma) if sigma else x


def test_box_sum_is_the_window_sum():
    x = np.random.default_rng(0).normal(size=(9, 11)).astype(np.float32)
    got = np.asarray(ops.box_sum(x, 2))
    for y in range(2, 7):
        for c in range(2, 9):
            assert got[y, c] == pytest.approx(x[y - 2 : y + 3, c - 2 : c + 3].sum(), abs=1e-4)
    assert (got[:2] == 0).all() and (got[:, -2:] == 0).all()


def test_box_mean_averages_only_the_defined_entries_and_cuts_windows_at_the_border():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 9, 11)).astype(np.float32)
    defined = rng.uniform(size=(2, 9, 11)) > 0.3
    got = np.asarray(ops.box_mean(x, defined, 2))
    # scipy's uniform filter with zero padding: the window sums of x and of the mask, then their ratio.
    num = ndimage.uniform_filter(np.where(defined, x, 0.0), size=(1, 5, 5), mode="constant")
    den = ndimage.uniform_filter(defined.astype(np.float64), size=(1, 5, 5), mode="constant")
    np.testing.assert_allclose(got, np.where(den > 1e-9, num / np.maximum(den, 1e-12), x), atol=1e-5)
    # By hand at a corner: the 3 x 3 part of the window that lies inside the image.
    assert got[0, 0, 0] == pytest.approx(x[0, :3, :3][defined[0, :3, :3]].mean(), abs=1e-5)
    assert np.array_equal(np.asarray(ops.box_mean(x, defined, 0)), x)


def test_grey_is_bt601_as_opencv():
    rgb = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    ref = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)  # rounds to uint8
    assert np.abs(np.asarray(ops.rgb_to_grey(rgb)) - ref).max() <= 0.5 + 1e-4


def _zero_mean_ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def _plain_ncc(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


# zero_mean -> (the direct NumPy score, OpenCV's matchTemplate method computing the same score).
NCC_KINDS = {True: (_zero_mean_ncc, cv2.TM_CCOEFF_NORMED), False: (_plain_ncc, cv2.TM_CCORR_NORMED)}


@pytest.mark.parametrize("zero_mean", [True, False], ids=["zero_mean", "plain"])
def test_ncc_volume_matches_numpy_and_opencv_match_template(zero_mean):
    r, num = 2, 6
    direct, method = NCC_KINDS[zero_mean]
    left, right = _texture(0, 12, 20), _texture(1, 12, 20)
    right[:, 3:] = 0.7 * left[:, :-3] + 0.3 * right[:, 3:]  # correlated, so scores spread over [-1, 1]
    vol = np.asarray(ops.ncc_cost_volume(left, right, radius=r, num_disparities=num, zero_mean=zero_mean))
    assert vol.shape == (num, 12, 20)
    for y, x in [(2, 7), (5, 12), (9, 17), (6, 19 - r)]:
        tmpl = left[y - r : y + r + 1, x - r : x + r + 1]
        # Direct NCC of the two windows, disparity by disparity.
        for d in range(num):
            win = right[y - r : y + r + 1, x - d - r : x - d + r + 1]
            assert vol[d, y, x] == pytest.approx(direct(tmpl, win), abs=1e-4)
        # OpenCV slides the template along the right image's strip: column u holds the window centred at u + r.
        strip = right[y - r : y + r + 1].astype(np.float32)
        ref = cv2.matchTemplate(strip, tmpl.astype(np.float32), method)[0]
        np.testing.assert_allclose(vol[:, y, x], [ref[x - d - r] for d in range(num)], atol=1e-4)


# A 3 x 3 left and right window for the hand calculations: sum L^2 = sum R^2 = 9, sum L = sum R = 5, sum L R = 8.
HAND_L = np.array([[2, 0, 0], [0, 2, 0], [0, 0, 1]], np.float32)
HAND_R = np.array([[2, 0, 0], [0, 1, 0], [0, 0, 2]], np.float32)


def _score(left: np.ndarray, right: np.ndarray, zero_mean: bool) -> float:
    """The one defined entry of a 3 x 3 pair's volume: the centre pixel at disparity 0."""
    return float(ops.ncc_cost_volume(left, right, radius=1, num_disparities=1, zero_mean=zero_mean)[0, 1, 1])


def test_plain_and_zero_mean_ncc_of_a_3x3_window_by_hand():
    # Plain NCC (eq. 73), the cosine of the windows: 8 / sqrt(9 * 9) = 8/9.
    assert _score(HAND_L, HAND_R, zero_mean=False) == pytest.approx(8 / 9, abs=1e-6)
    # Zero-mean: both means 5/9; sum (L - 5/9)(R - 5/9) = 8 - 9 (5/9)^2 = 47/9, sum (L - 5/9)^2 = 9 - 25/9 = 56/9.
    assert _score(HAND_L, HAND_R, zero_mean=True) == pytest.approx(47 / 56, abs=1e-6)


def test_a_brightness_offset_changes_plain_ncc_only_and_a_gain_neither():
    # R + 10: sum L (R + 10) = 8 + 10 * 5 = 58, sum (R + 10)^2 = 9 + 20 * 5 + 9 * 100 = 1009.
    assert _score(HAND_L, HAND_R + 10, zero_mean=False) == pytest.approx(58 / np.sqrt(9 * 1009), abs=1e-6)
    assert _score(HAND_L, HAND_R + 10, zero_mean=True) == pytest.approx(47 / 56, abs=1e-6)
    # 3 R: every sum with R scales by 3 in the numerator and the denominator alike.
    assert _score(HAND_L, 3 * HAND_R, zero_mean=False) == pytest.approx(8 / 9, abs=1e-6)
    assert _score(HAND_L, 3 * HAND_R, zero_mean=True) == pytest.approx(47 / 56, abs=1e-6)


@pytest.mark.parametrize("zero_mean", [True, False], ids=["zero_mean", "plain"])
def test_sign_convention_right_image_shifted_left_by_3_px_is_disparity_plus_3(zero_mean):
    # R(u) = L(u + 3): the scene point at left column u is at right column u - 3, so d = u_L - u_R = +3.
    r, w = 2, 40
    base = _texture(8, 16, w + 3)
    left, right = base[:, :w], base[:, 3 : 3 + w]
    disp = np.asarray(
        ops.block_match(
            left, right, radius=r, num_disparities=8, lr_threshold=None, subpixel=False, zero_mean=zero_mean
        )
    )
    np.testing.assert_array_equal(disp[r:-r, 3 + r : -r], 3.0)
    # The course's eq. 73 read literally, L at u against R at u + d, peaks at d = -3: its d is minus mlcv's.
    direct = NCC_KINDS[zero_mean][0]
    y, u = 8, 20
    tmpl = left[y - r : y + r + 1, u - r : u + r + 1]
    course = {d: direct(tmpl, right[y - r : y + r + 1, u + d - r : u + d + r + 1]) for d in range(-6, 7)}
    assert max(course, key=course.get) == -3


@pytest.mark.parametrize("zero_mean", [True, False], ids=["zero_mean", "plain"])
def test_ncc_volume_marks_borders_and_textureless_windows_invalid(zero_mean):
    r, num = 1, 5
    left, right = _texture(2, 8, 12), _texture(3, 8, 12)
    left[4:7, 8:11] = 50.0  # a flat 3x3 window centred on (5, 9): textureless for both scores
    vol = np.asarray(
        ops.ncc_cost_volume(left, right, radius=r, num_disparities=num, min_disparity=1, zero_mean=zero_mean)
    )
    ys, xs = np.mgrid[0:8, 0:12]
    for i, d in enumerate(range(1, 1 + num)):
        expected = (ys >= r) & (ys < 8 - r) & (xs >= r) & (xs < 12 - r) & (xs - d - r >= 0)
        expected[5, 9] = False
        np.testing.assert_array_equal(np.isfinite(vol[i]), expected)


def test_wta_recovers_a_constant_shift_exactly():
    shift, r = 7, 3
    base = _texture(4, 30, 70)
    left, right = base[:, :60], base[:, shift : shift + 60]  # left (y, x) is right (y, x - 7)
    disp = np.asarray(ops.winner_takes_all(ops.ncc_cost_volume(left, right, radius=r, num_disparities=16)))
    inner = disp[r:-r, shift + r : -r]
    np.testing.assert_array_equal(inner, shift)
    assert np.isnan(disp[:r]).all() and np.isnan(disp[:, :r]).all()


@pytest.mark.parametrize("shift", [7.25, 7.5, 7.8])
def test_subpixel_refinement_recovers_a_fractional_shift(shift):
    r = 4
    base = _texture(5, 40, 90, sigma=2.0)
    left = base[:, :64]
    right = ndimage.shift(base, (0, -shift), order=3, mode="nearest")[:, :64]  # right (y, x) = base (y, x + shift)
    vol = ops.ncc_cost_volume(left, right, radius=r, num_disparities=16)
    wta = ops.winner_takes_all(vol)
    refined = np.asarray(ops.subpixel_refine(vol, wta))[r:-r, 12 + r : -r]
    # A parabola fitted to NCC scores is biased towards integers ("pixel locking"), so the tolerance is loose
    # per pixel and tight on the median; integer WTA alone misses by the fractional part.
    assert np.median(refined) == pytest.approx(shift, abs=0.08)
    assert np.abs(refined - shift).mean() < 0.15
    assert np.abs(np.asarray(wta)[r:-r, 12 + r : -r] - shift).mean() >= min(shift % 1, 1 - shift % 1) - 1e-6


def test_parabola_offset_by_hand():
    # Scores of c(t) = 1 - (t - 0.3)^2 at t = -1, 0, 1: -0.69, 0.91, 0.51; the vertex is at 0.3.
    assert float(ops.parabola_offset(np.float32(-0.69), np.float32(0.91), np.float32(0.51))) == pytest.approx(0.3)
    # Equal neighbours: the vertex is at the winner; a missing neighbour, a straight line or a minimum: no offset.
    assert float(ops.parabola_offset(0.5, 0.9, 0.5)) == 0.0
    assert float(ops.parabola_offset(-np.inf, 0.9, 0.5)) == 0.0
    assert float(ops.parabola_offset(0.1, 0.2, 0.3)) == 0.0
    assert float(ops.parabola_offset(0.5, 0.1, 0.4)) == 0.0


def test_left_right_check_rejects_occluded_pixels_by_hand():
    # Background at disparity 1, a foreground object at disparity 3 on left columns 3-4 (right columns 0-1).
    # Right view: columns 0-1 see the object; 2-7 the background (2-3 show background hidden in the left).
    d_left = np.array([[1, 1, 1, 3, 3, 1, 1, 1]], np.float32)
    d_right = np.array([[3, 3, 1, 1, 1, 1, 1, 1]], np.float32)
    kept = np.asarray(ops.left_right_check(d_left, d_right, threshold=0.5))
    # Column 0 matches outside the right image; 1-2 are background hidden behind the object in the right view.
    np.testing.assert_array_equal(np.isfinite(kept), [[False, False, False, True, True, True, True, True]])
    np.testing.assert_array_equal(kept[0, 3:], d_left[0, 3:])


def test_right_volume_is_the_volume_of_the_mirrored_pair():
    # Swapping the images and mirroring them makes the right image the reference: C_R[d, y, x] = C'[d, y, W-1-x].
    left, right = _texture(6, 10, 24), _texture(7, 10, 24)
    vol = ops.ncc_cost_volume(left, right, radius=2, num_disparities=5, min_disparity=2)
    mirrored = ops.ncc_cost_volume(right[:, ::-1], left[:, ::-1], radius=2, num_disparities=5, min_disparity=2)
    np.testing.assert_allclose(np.asarray(ops.right_volume(vol, 2)), np.asarray(mirrored)[:, :, ::-1], atol=1e-5)
    # The right image's WTA without the right volume, and the left WTA, agree with NumPy's argmax.
    expected = np.argmax(np.asarray(mirrored)[:, :, ::-1], axis=0) + 2.0
    expected[~np.isfinite(np.asarray(mirrored)[:, :, ::-1]).any(0)] = np.nan
    np.testing.assert_array_equal(np.asarray(ops.right_winner_takes_all(vol, 2)), expected)
    expected = np.argmax(np.asarray(vol), axis=0) + 2.0
    expected[~np.isfinite(np.asarray(vol)).any(0)] = np.nan
    np.testing.assert_array_equal(np.asarray(ops.winner_takes_all(vol, 2)), expected)


def test_lr_check_in_the_matcher_rejects_the_occluded_pixels_of_a_synthetic_pair():
    pair = stereo_data.synthetic_pair(3, 80, 120, planes=3, min_disparity=3, max_disparity=20, noise_std=1.0)
    disp = np.asarray(
        ops.block_match(pair["left"], pair["right"], radius=2, num_disparities=24, lr_threshold=1.0, subpixel=False)
    )
    occ, inner = pair["occluded"], np.zeros_like(pair["occluded"])
    inner[2:-2, 2:-2] = True
    assert occ[inner].mean() > 0.03  # the scene has occlusions to reject
    assert np.isnan(disp[inner & occ]).mean() > 0.8
    assert np.isnan(disp[inner & ~occ]).mean() < 0.1


def test_fill_background_takes_the_farther_neighbour():
    d = np.array([[np.nan, 5, np.nan, np.nan, 2, np.nan], [np.nan] * 6], np.float32)
    got = np.asarray(ops.fill_background(d))
    np.testing.assert_array_equal(got[0], [5, 5, 2, 2, 2, 2])
    assert np.isnan(got[1]).all()


def test_disparity_to_depth_by_hand():
    # b = 0.1 m, f = 500 px: d = 10 px -> 5 m; with doffs = 10 px -> 2.5 m; d = 0 or missing -> no depth.
    z = np.asarray(ops.disparity_to_depth(np.array([10.0, 20.0, 0.0, np.nan]), 500.0, 0.1))
    np.testing.assert_allclose(z[:2], [5.0, 2.5])
    assert np.isnan(z[2:]).all()
    assert float(ops.disparity_to_depth(10.0, 500.0, 0.1, doffs_px=10.0)) == pytest.approx(2.5)

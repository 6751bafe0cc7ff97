"""Stereo metrics on a hand-worked example."""

from __future__ import annotations

import numpy as np
import pytest

from mlcv.metrics import stereo

NAN = np.nan
# Five pixels have ground truth; errors: 0.5, missing, 3.0, 0.0, 1.5.
GT = np.array([[1.0, 2.0, NAN], [4.0, 5.0, 6.0]])
PRED = np.array([[1.5, NAN, 3.0], [7.0, 5.0, 7.5]])


def test_bad_rates_count_missing_estimates_as_wrong():
    assert stereo.bad_rate(PRED, GT, 2.0) == pytest.approx(2 / 5)  # missing, 3.0
    assert stereo.bad_rate(PRED, GT, 1.0) == pytest.approx(3 / 5)  # missing, 3.0, 1.5
    assert stereo.bad_rate(PRED, GT, 4.0) == pytest.approx(1 / 5)  # missing only
    mask = np.array([[True, True, True], [False, True, True]])  # leave out the 3.0 error
    assert stereo.bad_rate(PRED, GT, 2.0, mask) == pytest.approx(1 / 4)


def test_end_point_error_and_density():
    assert stereo.end_point_error(PRED, GT) == pytest.approx((0.5 + 3.0 + 0.0 + 1.5) / 4)
    assert stereo.density(PRED, GT) == pytest.approx(4 / 5)
    # The missing (0, 1) is filled with the farther (smaller) neighbour on its row, 1.5: error 0.5.
    assert stereo.end_point_error_filled(PRED, GT) == pytest.approx((0.5 + 0.5 + 3.0 + 0.0 + 1.5) / 5)


def test_summarize_reports_percent_and_pixels():
    row = stereo.summarize(PRED, GT)
    assert row["bad2_pct"] == pytest.approx(40.0)
    assert row["density_pct"] == pytest.approx(80.0)
    assert row["epe_px"] == pytest.approx(1.25)


def test_no_ground_truth_gives_nan():
    empty = np.full((2, 2), NAN)
    assert np.isnan(stereo.bad_rate(np.zeros((2, 2)), empty))
    assert np.isnan(stereo.end_point_error(np.zeros((2, 2)), empty))

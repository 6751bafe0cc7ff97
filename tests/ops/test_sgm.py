"""Semi-global matching: a hand-computed example, the no-penalty identity, and noise smoothed away."""

from __future__ import annotations

import numpy as np
import pytest

from mlcv.ops import sgm
from mlcv.ops import stereo as ops


def test_four_paths_by_hand_on_one_row():
    # Costs of 3 pixels x 3 disparities, P1 = 1, P2 = 3. Left to right: L(x0) = C(x0) = [0, 2, 4];
    # L(x1) = [3 + 0, 0 + 1, 3 + 3] = [3, 1, 6]; L(x2) = [4 + 2 - 1, 4 + 1 - 1, 0 + 2 - 1] = [5, 4, 1].
    # Right to left: [4, 4, 0], then [3 + 3, 0 + 1, 3 + 0] = [6, 1, 3], then [0 + 2 - 1, 2 + 1 - 1, 4 + 2 - 1].
    # One row: the vertical paths are the costs themselves. Sum of the four: L + R + 2 C.
    cost = np.array([[0, 2, 4], [3, 0, 3], [4, 4, 0]], np.float32)  # [x, d]
    volume = -cost.T[:, None, :]  # [D, 1, W] scores
    total = np.array([[1, 8, 17], [15, 2, 15], [17, 16, 1]], np.float32)  # [x, d]
    got = np.asarray(sgm.semi_global(volume, p1=1.0, p2=3.0))
    np.testing.assert_allclose(got, -total.T[:, None, :] / 4, rtol=1e-6)


def test_without_penalties_the_volume_is_unchanged_and_undefined_entries_stay_undefined():
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(5, 6, 9)).astype(np.float32)
    volume[3:, :, :2] = -np.inf  # x - d < 0
    got = np.asarray(sgm.semi_global(volume, p1=0.0, p2=0.0))
    np.testing.assert_allclose(got, volume, rtol=1e-5)
    with pytest.raises(ValueError, match="P2 >= P1"):
        sgm.semi_global(volume, p1=2.0, p2=1.0)


def test_smoothing_recovers_a_plane_from_a_noisy_volume():
    d_true, (h, w) = 4, (20, 40)
    peak = -0.1 * np.abs(np.arange(16.0) - d_true)[:, None, None]
    noisy = (peak + np.random.default_rng(1).normal(0, 0.15, (16, h, w))).astype(np.float32)
    noisy[:, :, :15] = np.where(np.arange(15)[None, None, :] >= np.arange(16)[:, None, None], noisy[:, :, :15], -np.inf)

    def wrong(volume):
        return np.mean(np.abs(np.asarray(ops.winner_takes_all(volume))[:, 16:] - d_true) > 0.5)

    # Weak penalties smooth a little, penalties an order above the noise almost everything.
    errors = [wrong(noisy)] + [wrong(sgm.semi_global(noisy, p1=p1, p2=4 * p1)) for p1 in (0.1, 1.0)]
    assert errors[0] > 0.5 and errors[0] > errors[1] > errors[2] and errors[2] < 0.02

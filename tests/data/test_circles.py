"""The built-in ``circles`` dataset against scikit-learn's ``make_circles``, the ``polar`` op by hand, and the
circles_polar experiment end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.datasets import make_circles

import mlcv
from experiments import circles_polar
from mlcv import data
from mlcv.config import ConfigError
from mlcv.data import ops


@pytest.mark.parametrize("role, n, seed", [("train", 800, 0), ("validation", 200, 1), ("test", 500, 2)])
def test_circles_are_make_circles_draws(role, n, seed):
    """Each split holds the points and labels of make_circles(n, noise=0.1, factor=0.5) with its own seed, as
    float32 (in the order TFDS stored them: compared sorted by point)."""
    split = data.load_arrays("circles", role)
    points, labels = make_circles(n, noise=0.1, factor=0.5, random_state=seed)
    points = points.astype(np.float32)
    assert split["image"].shape == (n, 2) and split["image"].dtype == np.float32
    got, want = np.lexsort(split["image"].T), np.lexsort(points.T)
    np.testing.assert_array_equal(split["image"][got], points[want])
    np.testing.assert_array_equal(split["label"][got], labels[want])
    assert split["label"].sum() == n // 2


def test_circles_classes_differ_in_radius_not_in_mean():
    """The class means are both near the origin (no line separates the classes), but a radius of 0.75 does."""
    split = data.load_arrays("circles", "train")
    x, y = split["image"], split["label"]
    assert np.abs(x[y == 0].mean(0)).max() < 0.1 and np.abs(x[y == 1].mean(0)).max() < 0.1
    r = np.hypot(x[:, 0], x[:, 1])
    assert ((r < 0.75) == (y == 1)).mean() > 0.99  # label 1 is the inner circle


def test_polar_by_hand():
    """(3, 4) -> (5, atan2(4, 3)); (0, -1) -> (1, -π/2); (-2, 0) -> (2, π); batched along the last axis."""
    op = ops.parse("polar")
    out = op({"image": np.array([3.0, 4.0], np.float32), "label": 1}, np.random.default_rng(0))
    np.testing.assert_allclose(out["image"], [5.0, math.atan2(4, 3)], rtol=1e-6)
    assert out["image"].dtype == np.float32 and out["label"] == 1
    pts = np.array([[0.0, -1.0], [-2.0, 0.0]], np.float32)
    np.testing.assert_allclose(ops.points.polar_coordinates(pts), [[1.0, -math.pi / 2], [2.0, math.pi]], rtol=1e-6)
    assert ops.moves("polar") == ("image",)


def test_polar_rejects_non_points():
    with pytest.raises(ValueError, match="polar"):
        ops.parse("polar")({"image": np.zeros((8, 8, 3))}, np.random.default_rng(0))


def test_features_arg_is_checked():
    assert circles_polar.get_config("features=polar").data.pp_train == "polar"
    with pytest.raises(ConfigError, match="cartesian"):
        circles_polar.get_config("features=log")


def test_runlocal_trains_end_to_end(tmp_path):
    """The runlocal polar experiment trains, evaluates and writes its summary through mlcv.run."""
    summary = mlcv.run(circles_polar.get_config("features=polar,runlocal"), str(tmp_path / "run"))
    assert summary["step"] == 24
    assert 0.0 <= summary["test"]["accuracy"] <= 1.0
    assert (tmp_path / "run" / "plots" / "confusion_test.png").is_file()

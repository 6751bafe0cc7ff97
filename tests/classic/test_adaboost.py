"""AdaBoost with stumps: sorting against brute force, the course's update by hand, and scikit-learn's SAMME."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import AdaBoostClassifier
from sklearn.tree import DecisionTreeClassifier

from mlcv.classic.algorithms import adaboost


def _brute_force(values: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Least weighted error of each feature by trying every threshold and both polarities one by one."""
    best = np.full(len(values), np.inf)
    for f, v in enumerate(values):
        u = np.unique(v)
        for theta in np.r_[u[0] - 1, (u[1:] + u[:-1]) / 2, u[-1] + 1]:
            for p in (1, -1):
                face = p * v < p * theta
                best[f] = min(best[f], w[face != y].sum())
    return best


def test_stump_by_sorting_equals_brute_force_scan_with_ties():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 6, size=(25, 30)).astype(float)  # many equal values
    y = rng.integers(0, 2, size=30).astype(bool)
    w = rng.random(30)
    w /= w.sum()
    sf = adaboost.sort_features(values)
    err, pos, pol = adaboost.best_stumps(sf, y, w)
    np.testing.assert_allclose(err, _brute_force(values, y, w), atol=1e-12)
    for f in range(len(values)):  # the returned stump really makes that error
        theta = adaboost.threshold_at(values[f], pos[f])
        face = pol[f] * values[f] < pol[f] * theta
        assert w[face != y].sum() == pytest.approx(err[f], abs=1e-12)


def test_one_round_by_hand():
    # x = 1..5, labels 1 1 0 0 1: the best stump is "x < 2.5 is a face", wrong only on x = 5: epsilon = 1/5,
    # beta = (1 - 1/5) / (1/5) = 4, that weight becomes 4/5, renormalised over 8/5: 1/8 each and 1/2.
    x = np.arange(1.0, 6.0)[None]
    y = np.array([1, 1, 0, 0, 1])
    stumps, w, errors, perfect = adaboost.boost(adaboost.sort_features(x), lambda f: x[f], y, 1)
    assert (stumps.feature[0], stumps.threshold[0], stumps.polarity[0]) == (0, 2.5, 1)
    assert stumps.alpha[0] == pytest.approx(np.log(4.0))
    np.testing.assert_allclose(w, [1 / 8, 1 / 8, 1 / 8, 1 / 8, 1 / 2])
    assert errors == [pytest.approx(0.2)] and not perfect


def test_stump_is_sklearns_depth_one_tree_under_the_same_weights():
    rng = np.random.default_rng(0)
    n = 60
    y = np.r_[np.ones(n // 2, int), np.zeros(n // 2, int)]
    x = rng.normal(size=(n, 4))  # continuous: no exact ties
    x[:, 0] += 5.0 * (y - 0.5)
    x[:, 1] += 2.0 * (y - 0.5)
    sf = adaboost.sort_features(x.T)
    for _ in range(20):
        w = rng.gamma(2.0, size=n)
        w /= w.sum()
        tree = DecisionTreeClassifier(max_depth=1).fit(x, y, sample_weight=w)
        err, pos, _ = adaboost.best_stumps(sf, y, w)
        f = int(np.argmin(err))
        assert f == tree.tree_.feature[0]
        assert adaboost.threshold_at(x[:, f], pos[f]) == pytest.approx(tree.tree_.threshold[0])
        assert err[f] == pytest.approx(w[tree.predict(x) != y].sum())


def test_training_error_curve_matches_sklearn_samme():
    # sklearn's stump minimises Gini impurity, ours the weighted error (the course's rule). On this fixed set
    # both pick the same eight stumps first, so alphas (beta = (1 - eps) / eps after each re-weighting) must
    # agree to rounding; after that the rules part ways, and the training error curves stay within 1 point.
    rng = np.random.default_rng(1)
    y = np.r_[np.ones(50, int), np.zeros(50, int)]
    x = rng.normal(size=(100, 3))
    x[:, 0] += 2.0 * (y - 0.5)
    x[:, 1] += 1.4 * (y - 0.5)
    ref = AdaBoostClassifier(DecisionTreeClassifier(max_depth=1), n_estimators=20, random_state=0).fit(x, y)
    ref_curve = np.array([(p != y).mean() for p in ref.staged_predict(x)])
    stumps, _, curve, _ = adaboost.boost(adaboost.sort_features(x.T), lambda f: x[:, f], y, 20)
    same = 8
    np.testing.assert_array_equal(stumps.feature[:same], [e.tree_.feature[0] for e in ref.estimators_[:same]])
    np.testing.assert_allclose(stumps.threshold[:same], [e.tree_.threshold[0] for e in ref.estimators_[:same]])
    np.testing.assert_allclose(stumps.alpha[:same], ref.estimator_weights_[:same], rtol=1e-9)
    np.testing.assert_allclose(curve[:same], ref_curve[:same])
    assert len(curve) == len(ref_curve) == 20
    assert np.abs(np.array(curve) - ref_curve).max() <= 0.01 + 1e-12


def test_random_feature_subsets_are_seeded():
    x, y = make_classification(n_samples=80, n_features=20, random_state=0)
    sf = adaboost.sort_features(x.T)
    runs = [adaboost.boost(sf, lambda f: x[:, f], y, 8, per_round=5, rng=np.random.default_rng(3))[0] for _ in range(2)]
    np.testing.assert_array_equal(runs[0].feature, runs[1].feature)

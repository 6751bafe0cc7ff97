"""The breadth-first random forest against scikit-learn's trees and forests."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier

from mlcv.classic.algorithms import forest as rf


def _data(n=300, features=6, classes=3, seed=0):
    x, y = make_classification(
        n, features, n_informative=4, n_redundant=0, n_classes=classes, n_clusters_per_class=1, random_state=seed
    )
    return x.astype(np.float32), y


@pytest.mark.parametrize("criterion", ["entropy", "gini"])
def test_one_split_equals_sklearn_stump(criterion):
    x, y = _data()
    ref = DecisionTreeClassifier(max_depth=1, criterion=criterion, max_features=None, random_state=0).fit(x, y).tree_
    params = rf.ForestParams(max_depth=1, max_features=x.shape[1], criterion=criterion, bootstrap=False)
    tree = rf.grow_tree(rf.MatrixFeatures(x), y, 3, params, np.random.default_rng(0))
    assert tree.left[0] == 1 and (tree.left[1:] == -1).all()
    assert tree.params[0, 0] == ref.feature[0]
    # Both take the midpoint of the two sorted values around the cut.
    assert tree.threshold[0] == pytest.approx(ref.threshold[0], rel=1e-6)
    # Node impurities (entropy in bits, or Gini) of the root and both children; sklearn's children are 1 and 2.
    np.testing.assert_allclose(tree.impurity, ref.impurity, rtol=1e-9)
    np.testing.assert_array_equal(tree.num_samples, ref.n_node_samples)
    value = ref.value[:, 0] / ref.value[:, 0].sum(1, keepdims=True)
    np.testing.assert_allclose(tree.distribution, value, rtol=1e-6)


def test_splits_of_many_nodes_at_once_equal_per_node_stumps():
    rng = np.random.default_rng(1)
    x, y = _data(400, 5, 3, seed=1)
    slot = np.sort(rng.integers(0, 4, len(y)))
    score, col, thr = rf.best_splits(x, slot, y, 3, "entropy")
    for node in range(4):
        xs, ys = x[slot == node], y[slot == node]
        ref = DecisionTreeClassifier(max_depth=1, criterion="entropy", random_state=0).fit(xs, ys).tree_
        assert col[node] == ref.feature[0]
        assert thr[node] == pytest.approx(ref.threshold[0], rel=1e-6)
        n = ref.n_node_samples
        assert score[node] == pytest.approx(n[1] * ref.impurity[1] + n[2] * ref.impurity[2], rel=1e-5)


def test_min_samples_leaf_and_a_pure_node():
    x = np.array([[0.0], [1.0], [2.0], [3.0], [4.0]], np.float32)
    y = np.array([0, 1, 1, 1, 1])
    # The best cut, 0 | 1 2 3 4, leaves one sample; with two at least, it has to be 0 1 | 2 3 4.
    _, _, thr = rf.best_splits(x, np.zeros(5, int), y, 2, "entropy", min_samples_leaf=1)
    assert thr[0] == pytest.approx(0.5)
    _, _, thr = rf.best_splits(x, np.zeros(5, int), y, 2, "entropy", min_samples_leaf=2)
    assert thr[0] == pytest.approx(1.5)
    tree = rf.grow_tree(
        rf.MatrixFeatures(x), np.zeros(5, int), 2, rf.ForestParams(max_features=1), np.random.default_rng(0)
    )
    assert len(tree.left) == 1 and tree.left[0] == -1  # a pure root is a leaf


def test_deeper_tree_without_bagging_equals_sklearn_tree():
    x, y = _data(500, 6, 3, seed=2)
    xt, _ = _data(200, 6, 3, seed=3)
    ref = DecisionTreeClassifier(max_depth=4, criterion="entropy", random_state=0).fit(x, y)
    params = rf.ForestParams(num_trees=1, max_depth=4, max_features=6, bootstrap=False)
    mine = rf.RandomForest(params, 3).fit(rf.MatrixFeatures(x), y)
    np.testing.assert_allclose(mine.predict_proba(rf.MatrixFeatures(xt)), ref.predict_proba(xt), atol=1e-6)
    # Stopping at depth 2 is the depth-2 tree.
    ref2 = DecisionTreeClassifier(max_depth=2, criterion="entropy", random_state=0).fit(x, y)
    np.testing.assert_allclose(
        mine.predict_proba(rf.MatrixFeatures(xt), max_depth=2), ref2.predict_proba(xt), atol=1e-6
    )


def test_forest_accuracy_close_to_sklearn():
    x, y = make_classification(3000, 20, n_informative=8, n_classes=4, n_clusters_per_class=2, random_state=4)
    xtr, ytr, xte, yte = x[:2000], y[:2000], x[2000:], y[2000:]
    params = rf.ForestParams(num_trees=10, max_depth=10, max_features=4, criterion="entropy")
    mine = rf.RandomForest(params, 4, seed=0).fit(rf.MatrixFeatures(xtr), ytr)
    acc = (mine.predict(rf.MatrixFeatures(xte)) == yte).mean()
    refs = [
        RandomForestClassifier(10, criterion="entropy", max_depth=10, max_features=4, random_state=s).fit(xtr, ytr)
        for s in range(3)
    ]
    ref_acc = np.mean([(r.predict(xte) == yte).mean() for r in refs])
    assert ref_acc > 0.6
    assert abs(acc - ref_acc) < 0.04, (acc, ref_acc)
    # The same seed grows the same forest.
    again = rf.RandomForest(params, 4, seed=0).fit(rf.MatrixFeatures(xtr), ytr)
    np.testing.assert_array_equal(
        again.predict_proba(rf.MatrixFeatures(xte)), mine.predict_proba(rf.MatrixFeatures(xte))
    )


def test_bad_criterion_is_refused():
    with pytest.raises(ValueError, match="criterion"):
        rf.RandomForest(rf.ForestParams(criterion="log_loss"), 2)


@pytest.mark.parametrize("key_bits", [64, 0])  # 0: the argsort path taken when the packed key does not fit
@pytest.mark.parametrize("criterion", ["entropy", "gini"])
def test_tied_values_of_many_nodes_equal_sklearn_stumps(monkeypatch, key_bits, criterion):
    monkeypatch.setattr(rf, "_KEY_BITS", key_bits)
    rng = np.random.default_rng(5)
    x = rng.integers(-3, 4, (600, 4)).astype(np.float32)  # 7 distinct values a column: many ties
    y = (x[:, 0] + x[:, 1] + rng.normal(0, 1.5, 600) > 0).astype(int) + (x[:, 2] > 1)
    slot = np.sort(rng.integers(0, 6, 600))
    score, col, thr = rf.best_splits(x, slot, y, 3, criterion, min_samples_leaf=5)
    for node in range(6):
        xs, ys = x[slot == node], y[slot == node]
        ref = DecisionTreeClassifier(max_depth=1, criterion=criterion, min_samples_leaf=5, random_state=0)
        ref = ref.fit(xs, ys).tree_
        n = ref.n_node_samples
        assert score[node] == pytest.approx(n[1] * ref.impurity[1] + n[2] * ref.impurity[2], rel=1e-5)
        # The chosen column is checked through the samples it sends left (sklearn visits columns in random order).
        assert thr[node] == pytest.approx(np.float32(ref.threshold[0]), rel=1e-6)
        assert (xs[:, col[node]] <= thr[node]).sum() == n[1]


def test_minus_zero_equals_zero():
    # Cutting between -0.0 and 0.0 would separate the classes perfectly, but they are the same value.
    x = np.array([-0.0, -0.0, -0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0], np.float32)[:, None]
    y = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 1])
    ref = DecisionTreeClassifier(max_depth=1, criterion="entropy", random_state=0).fit(x, y).tree_
    _, _, thr = rf.best_splits(x, np.zeros(10, int), y, 2, "entropy")
    assert thr[0] == pytest.approx(ref.threshold[0]) == 0.5

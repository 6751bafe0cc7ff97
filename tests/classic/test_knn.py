"""kNN: scikit-learn's brute kNN on digits, the tie rules by hand, batching, the l_p distance, the launcher."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from conftest import ROOT, launch_cmd
from scipy.spatial.distance import cdist
from sklearn.datasets import load_digits
from sklearn.neighbors import KNeighborsClassifier

import mlcv
from experiments import digits_knn
from mlcv.classic.algorithms import knn
from mlcv.config import ConfigError


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return x[:1257], y[:1257], x[1257:], y[1257:]


@pytest.fixture(scope="module")
def exact_distances(digits):
    """The p-th power of the l_p distances from the test queries to the training split, by p (numpy, float64).

    The digits are integers, so these are exact and ties are real ties.
    """
    tx, _, qx, _ = digits
    return {p: (np.abs(qx[:, None] - tx[None]) ** p).sum(-1) for p in (1, 2, 3)}


@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("k", [1, 3, 7])
def test_predictions_equal_sklearn_brute_on_digits(digits, exact_distances, k, p):
    """Identical to sklearn wherever the labels of the k nearest are determined; the stable rule everywhere.

    Where training points of different labels tie at the k-th distance,
    sklearn's heap keeps an arbitrary one of them (it even changes with its
    thread count), so those few queries are compared with numpy's stable
    argsort instead.
    """
    tx, ty, qx, qy = digits
    pred = knn.predict(tx, ty, qx, k, p)
    ref = KNeighborsClassifier(n_neighbors=k, p=p, algorithm="brute").fit(tx, ty).predict(qx)
    d = exact_distances[p]
    order = np.argsort(d, axis=1, kind="stable")
    kth = np.take_along_axis(d, order[:, k - 1 : k], 1)
    at_kth = d == kth
    mixed = np.where(at_kth, ty, 99).min(1) != np.where(at_kth, ty, -1).max(1)
    determined = ~mixed | ((d <= kth).sum(1) == k)  # all tied points fit inside the k: no choice to make
    assert determined.mean() > 0.9  # the comparison with sklearn covers most of the test split
    np.testing.assert_array_equal(pred[determined], ref[determined])
    np.testing.assert_array_equal(knn.neighbours(qx, tx, k, p), order[:, :k])


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, np.inf])
def test_tie_rules_by_hand(p):
    # 1-D training points 0, 2, -2, 4 with labels 1, 0, 3, 1; the query 1 is at distance 1, 1, 3, 3 from them.
    train_x = np.array([[0.0], [2.0], [-2.0], [4.0]])
    train_y = np.array([1, 0, 3, 1])
    q = np.array([[1.0]])
    # k=1: points 0 and 1 tie; the lower index (0, label 1) is nearer, although label 0 is lower.
    assert knn.predict(train_x, train_y, q, 1, p)[0] == 1
    # k=2: one vote each for labels 1 and 0: the lowest label wins.
    assert knn.predict(train_x, train_y, q, 2, p)[0] == 0
    # k=3: points 2 and 3 tie at the third place; index 2 (label 3) enters, so the vote is 1-1-1 and 0 wins.
    # Taking index 3 instead would have given label 1 two votes.
    assert knn.neighbours(q, train_x, 3, p).tolist() == [[0, 1, 2]]
    assert knn.predict(train_x, train_y, q, 3, p)[0] == 0


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
def test_batching_gives_the_unbatched_result(digits, p):
    tx, _, qx, _ = digits
    whole = knn.neighbours(qx, tx, 5, p, batch_size=len(qx))
    for batch in (1, 7, 256):
        np.testing.assert_array_equal(
            knn.neighbours(qx[:50] if batch == 1 else qx, tx, 5, p, batch), whole[: 50 if batch == 1 else None]
        )


@pytest.mark.parametrize("p", [1.0, 3.0])
def test_a_chunk_holds_its_distances_not_the_per_feature_differences(p):
    batch, n, d = 64, 1000, 64
    compiled = knn._chunk_neighbours.lower(np.zeros((batch, d)), np.zeros((n, d)), 5, p).compile()
    # The distance chunk is batch x n floats; the differences would be d times more.
    assert compiled.memory_analysis().temp_size_in_bytes < 2 * batch * n * 4


@pytest.mark.parametrize("p", [1.0, 1.5, 2.0, 3.0, np.inf])
def test_reduced_distance_is_the_lp_distance_to_the_p(p):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 5)).astype(np.float32), rng.normal(size=(4, 5)).astype(np.float32)
    ref = cdist(a, b, "chebyshev") if np.isinf(p) else cdist(a, b, "minkowski", p=p) ** p
    np.testing.assert_allclose(np.asarray(knn.reduced_distances(a, b, p)), ref, rtol=1e-4, atol=1e-5)


def test_grid_accuracy_is_the_accuracy_of_each_point(digits):
    tx, ty, qx, qy = digits
    ks, ps = [1, 4, 9], [1.0, 2.0]
    grid = knn.grid_accuracy((tx, ty), (qx[:200], qy[:200]), ks, ps)
    for i, p in enumerate(ps):
        for j, k in enumerate(ks):
            assert grid[i, j] == np.mean(knn.predict(tx, ty, qx[:200], k, p) == qy[:200])


def test_launch_runlocal_writes_the_workdir(tmp_path):
    wd = tmp_path / "knn"
    proc = subprocess.run(
        launch_cmd("--config=experiments/digits_knn.py:runlocal", f"--workdir={wd}"),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith(f"{wd}: test accuracy") and "chosen on validation" in line and "wall time" in line
    summary = json.loads((wd / "summary.json").read_text())
    assert summary["test"]["accuracy"] > 0.95 and summary["fit"]["k"] in (1, 3)
    records = [json.loads(r) for r in (wd / "metrics.jsonl").read_text().splitlines()]
    assert [(r["k"], r["p"]) for r in records] == [(1, 1), (3, 1), (1, 2), (3, 2)]
    best = max(records, key=lambda r: r["validation/accuracy"])
    assert summary["validation"]["accuracy"] == best["validation/accuracy"]
    assert {p.name for p in (wd / "plots").iterdir()} == {"knn_grid.png", "knn_boundary.png"}


def test_bad_k_is_a_config_error_before_anything_is_written(tmp_path):
    config = digits_knn.get_config("runlocal")
    config.knn.k = 0
    with pytest.raises(ConfigError, match=r"config\.knn\.k\b"):
        mlcv.run(config, tmp_path / "bad")
    config.knn.k, config.knn.p_grid = None, (2.0, -1.0)
    with pytest.raises(ConfigError, match=r"config\.knn\.p_grid"):
        mlcv.run(config, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()

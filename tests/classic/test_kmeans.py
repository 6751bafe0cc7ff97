"""k-means: inertia against scikit-learn's KMeans, the same run from the same centres, seeding, a hand example."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits, make_blobs

from mlcv.classic.algorithms import kmeans


@pytest.fixture(scope="module")
def blobs():
    return make_blobs(n_samples=500, n_features=2, centers=5, cluster_std=1.5, random_state=0)[0]


@pytest.fixture(scope="module")
def digits():
    return load_digits().data


@pytest.mark.parametrize("name,k,rtol", [("blobs", 5, 0.01), ("digits", 10, 0.02)])
def test_inertia_matches_sklearn(request, name, k, rtol):
    x = request.getfixturevalue(name)
    ours = kmeans.kmeans(jax.random.key(0), x, k, n_init=10)
    ref = KMeans(n_clusters=k, n_init=10, random_state=0).fit(x)
    assert ours.inertia == pytest.approx(ref.inertia_, rel=rtol)
    # The reported inertia is that of the returned centres and labels.
    assert ours.inertia == pytest.approx(((x - ours.centres[ours.labels]) ** 2).sum(), rel=1e-5)
    np.testing.assert_array_equal(ours.labels, ((x[:, None] - ours.centres[None]) ** 2).sum(-1).argmin(1))


@pytest.mark.parametrize("name,k", [("blobs", 5), ("digits", 10)])
def test_same_initial_centres_give_sklearns_result(request, name, k):
    x = request.getfixturevalue(name)
    init = x[::37][:k]  # spread over the data, so no cluster empties
    ours = kmeans.kmeans(None, x, k, init=init, tol=0.0)
    ref = KMeans(n_clusters=k, init=init, n_init=1, tol=0.0).fit(x)
    np.testing.assert_array_equal(ours.labels, ref.labels_)
    np.testing.assert_allclose(ours.centres, ref.cluster_centers_, rtol=1e-5, atol=1e-4)
    assert ours.inertia == pytest.approx(ref.inertia_, rel=1e-5)
    assert ours.n_iter == ref.n_iter_


def test_lloyd_by_hand():
    # Points 0, 1, 10, 11 from centres 0 and 1: step 1 puts {0} and {1, 10, 11} apart, so the centres move to
    # 0 and 22/3; step 2 puts {0, 1} and {10, 11}: centres 0.5 and 10.5; step 3 changes no label.
    x = np.array([[0.0], [1.0], [10.0], [11.0]])
    out = kmeans.kmeans(None, x, 2, init=np.array([[0.0], [1.0]]), tol=0.0)
    np.testing.assert_allclose(out.centres, [[0.5], [10.5]])
    assert out.labels.tolist() == [0, 0, 1, 1]
    assert out.inertia == pytest.approx(4 * 0.25)
    assert out.n_iter == 3


def test_seeding_picks_distinct_data_points_and_is_seeded(blobs):
    a = np.asarray(kmeans.kmeans_plusplus(jax.random.key(1), blobs, 5))
    b = np.asarray(kmeans.kmeans_plusplus(jax.random.key(1), blobs, 5))
    np.testing.assert_array_equal(a, b)
    rows = {tuple(r) for r in np.asarray(blobs, np.float32)}
    assert all(tuple(c) in rows for c in a) and len({tuple(c) for c in a}) == 5
    # Fewer distinct points than k: seeding still returns k data points instead of NaNs.
    few = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0]]), 5, axis=0)
    assert np.isfinite(np.asarray(kmeans.kmeans_plusplus(jax.random.key(0), few, 3))).all()

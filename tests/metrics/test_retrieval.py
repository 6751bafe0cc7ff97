"""Retrieval and verification metrics against pytorch-metric-learning, scikit-learn, brute force and hand examples."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import sklearn.metrics as skm
from scipy.spatial.distance import cdist
from sklearn.neighbors import KNeighborsClassifier

from mlcv.config import ConfigError
from mlcv.metrics import retrieval as rt
from mlcv.metrics import verification as vf


def _clusters(seed: int, n: int = 150, classes: int = 7, dim: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping Gaussian clusters (continuous: no distance ties), one label alone in its class."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    labels[0] = 99  # a lone query: nothing relevant to retrieve
    centres = rng.normal(size=(100, dim))
    return (rng.normal(size=(n, dim)) + 1.5 * centres[labels % 100]).astype(np.float32), labels


def _brute_ranks(emb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Relevance of each query's others, nearest first (float64 distances, self left out): [N, N - 1]."""
    d = cdist(emb.astype(np.float64), emb.astype(np.float64))
    np.fill_diagonal(d, np.inf)
    order = np.argsort(d, axis=1, kind="stable")[:, :-1]
    return labels[order] == labels[:, None]


@pytest.mark.parametrize("seed", range(3))
def test_map_at_r_r_precision_precision_at_1_vs_pytorch_metric_learning(seed):
    pytest.importorskip("pytorch_metric_learning")
    import torch
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    emb, labels = _clusters(seed)
    calc = AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r", "r_precision"),
        device=torch.device("cpu"),
        knn_func=CustomKNN(LpDistance(normalize_embeddings=False)),  # the plain Euclidean distance
    )
    ref = calc.get_accuracy(emb, labels, emb, labels, ref_includes_query=True)
    got = rt.retrieval_metrics(emb, labels, ks=(1,), batch_size=32)  # several chunks, the last one padded
    assert got["recall_at_1"] == pytest.approx(ref["precision_at_1"], abs=1e-6)
    assert got["map_at_r"] == pytest.approx(ref["mean_average_precision_at_r"], abs=1e-6)
    assert got["r_precision"] == pytest.approx(ref["r_precision"], abs=1e-6)
    assert rt.map_at_r(emb, labels) == pytest.approx(got["map_at_r"], abs=1e-12)  # one chunk: other sums
    assert rt.r_precision(emb, labels) == pytest.approx(got["r_precision"], abs=1e-12)


@pytest.mark.parametrize("seed", range(2))
def test_recall_at_k_vs_brute_force(seed):
    emb, labels = _clusters(seed, n=60, classes=5)
    rel = _brute_ranks(emb, labels)
    has_relevant = rel.any(1)  # the lone query is left out
    ks = (1, 2, 4, 8, 59, 100)  # 59 = N - 1 retrieves everything, and so does any larger k
    got = rt.recall_at_k(emb, labels, ks, batch_size=16)
    for k in ks:
        assert got[k] == pytest.approx(rel[has_relevant, :k].any(1).mean(), abs=1e-12)
    assert got[59] == got[100] == 1.0


def _expected_by_enumeration(emb: np.ndarray, labels: np.ndarray, ks: tuple[int, ...]) -> dict[str, float]:
    """The metrics averaged over every order of each query's others that sorts their distances."""
    d = cdist(emb, emb)
    sums: dict[str, float] = {}
    queries = 0
    for q in range(len(labels)):
        others = [i for i in range(len(labels)) if i != q]
        r = int(np.sum(labels[others] == labels[q]))
        if r == 0:
            continue
        queries += 1
        values = []
        for perm in itertools.permutations(others):
            dist = d[q, list(perm)]
            if np.any(np.diff(dist) < 0):
                continue
            rel = labels[list(perm)] == labels[q]
            precision = np.cumsum(rel) / np.arange(1, len(rel) + 1)
            row = {f"recall_at_{k}": float(rel[:k].any()) for k in ks}
            row["r_precision"] = rel[:r].mean()
            row["map_at_r"] = np.sum(precision[:r] * rel[:r]) / r
            values.append(row)
        for key in values[0]:
            sums[key] = sums.get(key, 0.0) + np.mean([v[key] for v in values])
    return {key: total / queries for key, total in sums.items()}


def test_ties_count_as_the_expectation_over_random_orders():
    """Items on a few integer points (exact float32 distances, many ties): each metric is its mean over every
    order of the tied items, not what the split's order happens to give."""
    emb = np.array([[0, 0], [0, 0], [0, 0], [1, 0], [1, 0], [0, 1], [3, 0]], np.float32)
    labels = np.array([0, 1, 0, 1, 0, 1, 1])
    ks = (1, 2, 3)
    expected = _expected_by_enumeration(emb, labels, ks)
    got = rt.retrieval_metrics(emb, labels, ks, batch_size=4)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    # A collapsed embedding: every other item is equally near, so R-precision is R / (N - 1) on average.
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    got = rt.retrieval_metrics(np.zeros((9, 3)), labels, (1,))
    r = np.bincount(labels)[labels] - 1
    assert got["r_precision"] == pytest.approx(np.mean(r / 8), abs=1e-12)
    assert got["recall_at_1"] == pytest.approx(np.mean(r / 8), abs=1e-12)
    # ... whatever the order of the split.
    order = np.argsort(labels, kind="stable")[::-1]
    assert rt.retrieval_metrics(np.zeros((9, 3)), labels[order], (1,)) == pytest.approx(got, abs=1e-12)


def test_undefined_cases_are_nan():
    assert all(np.isnan(v) for v in rt.retrieval_metrics(np.zeros((3, 2)), np.array([0, 1, 2])).values())
    emb, labels = _clusters(0, n=20)
    emb[3, 1] = np.nan
    assert all(np.isnan(v) for v in rt.retrieval_metrics(emb, labels).values())
    assert np.isnan(rt.knn_accuracy(emb, labels)) and np.isnan(rt.knn_accuracy(emb[:1], labels[:1]))


@pytest.mark.parametrize("k", [1, 3, 5])
def test_knn_accuracy_vs_sklearn_leave_one_out(k):
    emb, labels = _clusters(3, n=60, classes=4)
    predictions = [
        KNeighborsClassifier(n_neighbors=k, algorithm="brute")
        .fit(np.delete(emb, i, 0), np.delete(labels, i))
        .predict(emb[i : i + 1])[0]
        for i in range(len(labels))
    ]
    assert rt.knn_accuracy(emb, labels, k, batch_size=16) == pytest.approx(np.mean(predictions == labels), abs=1e-12)


def test_enrolment_split_and_empty_gallery():
    labels = np.array([5, 3, 5, 5, 3, 3, 7, 7, 7])
    gallery, probes = rt.enrolment_split(labels, 2, "cfg.enrol")
    np.testing.assert_array_equal(gallery, [0, 1, 2, 4, 6, 7])  # the first two of each identity, in split order
    np.testing.assert_array_equal(probes, [3, 5, 8])
    with pytest.raises(ConfigError, match=r"cfg\.enrol=3.*no probe"):
        rt.enrolment_split(labels, 3, "cfg.enrol")
    with pytest.raises(ConfigError, match=r"cfg\.enrol=0.*empty"):
        rt.enrolment_split(labels, 0, "cfg.enrol")
    with pytest.raises(ConfigError, match=r"my\.enrol_per_class.*empty"):
        rt.enrol_and_identify(np.zeros((0, 4)), np.zeros(0, int), np.ones((3, 4)), 1, "my.enrol_per_class")


def test_a_new_identity_is_recognised_once_enrolled():
    """The embedding is fixed (no retraining): enrolling identity 3's first images makes its probes recognised."""
    rng = np.random.default_rng(0)
    centres = 10 * np.eye(4, 6)
    labels = np.repeat(np.arange(4), 5)
    emb = centres[labels] + rng.normal(scale=0.3, size=(20, 6))
    gallery, probes = rt.enrolment_split(labels, 2, "k")
    known = gallery[labels[gallery] != 3]
    new = probes[labels[probes] == 3]
    before = rt.enrol_and_identify(emb[known], labels[known], emb[new])
    assert not np.any(before == 3)  # an identity nobody enrolled cannot be recognised
    after = rt.enrol_and_identify(emb[gallery], labels[gallery], emb[probes])
    np.testing.assert_array_equal(after, labels[probes])


def test_make_pairs_balanced_protocol():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, 50)
    pairs, same = vf.make_pairs(labels, seed=1)
    positives = {(i, j) for i, j in itertools.combinations(range(50), 2) if labels[i] == labels[j]}
    assert {tuple(p) for p in pairs[same]} == positives  # every positive pair, once
    assert same.sum() == (~same).sum() == len(positives)
    neg = pairs[~same]
    assert np.all(labels[neg[:, 0]] != labels[neg[:, 1]]) and np.all(neg[:, 0] < neg[:, 1])
    assert len({tuple(p) for p in neg}) == len(neg)  # without replacement
    again, _ = vf.make_pairs(labels, seed=1)
    np.testing.assert_array_equal(again, pairs)  # a fixed seed fixes the pairs
    assert {tuple(p) for p in vf.make_pairs(labels, seed=2)[0][~same]} != {tuple(p) for p in neg}
    capped, capped_same = vf.make_pairs(labels, seed=1, max_pairs=31)
    assert capped_same.sum() == (~capped_same).sum() == 15
    # Fewer negatives (4) than positives (6): the positives are sampled down to 4.
    pairs, same = vf.make_pairs(np.array([0, 0, 0, 0, 1]))
    assert same.sum() == (~same).sum() == 4 and set(pairs[~same].ravel()) >= {4}
    assert vf.make_pairs(np.array([0, 1, 2]))[0].shape == (0, 2)


def test_pair_distances():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(10, 4))
    pairs = np.array([[0, 1], [2, 9], [3, 3]])
    np.testing.assert_allclose(
        vf.pair_distances(emb, pairs), [cdist(emb[[i]], emb[[j]])[0, 0] for i, j in pairs], atol=1e-12
    )
    cos = [cdist(emb[[i]], emb[[j]], "cosine")[0, 0] for i, j in pairs]
    np.testing.assert_allclose(vf.pair_distances(emb, pairs, "cosine"), cos, atol=1e-12)
    alpha = np.array([1.0, 0.0, 2.0, 0.5])
    np.testing.assert_allclose(
        vf.pair_distances(emb, pairs, "deepface", alpha), np.abs(emb[pairs[:, 0]] - emb[pairs[:, 1]]) @ alpha
    )
    x = vf.deepface_normalise(
        np.array([[2.0, -1.0], [1.0, 4.0]]), vf.deepface_scale(np.array([[2.0, -1.0], [1.0, 4.0]]))
    )
    np.testing.assert_allclose(x, [[1, -0.25] / np.hypot(1, 0.25), [0.5, 1] / np.hypot(0.5, 1)])


@pytest.mark.parametrize("seed", range(3))
def test_roc_and_auc_vs_sklearn(seed):
    rng = np.random.default_rng(seed)
    same = rng.random(300) < 0.5
    for d in (np.round(rng.random(300) + 0.4 * ~same, 1), rng.random(300) + 0.3 * ~same):  # ties, and none
        for drop in (False, True):
            far, tar, thresholds = vf.roc_curve(d, same, drop_intermediate=drop)
            sk_far, sk_tar, sk_thresholds = skm.roc_curve(same, -d, drop_intermediate=drop)
            np.testing.assert_allclose(far, sk_far, atol=1e-12)
            np.testing.assert_allclose(tar, sk_tar, atol=1e-12)
            np.testing.assert_allclose(thresholds, -sk_thresholds, atol=1e-12)
        assert vf.roc_auc(d, same) == pytest.approx(skm.roc_auc_score(same, -d), abs=1e-12)
    assert np.isnan(vf.roc_auc(np.arange(3.0), np.ones(3, bool)))


POS = [0.1, 0.2, 0.5, 0.9]
NEG = [0.3, 0.6, 0.7, 0.8]


def test_tar_at_far_by_hand():
    d, same = np.r_[POS, NEG], np.r_[np.ones(4, bool), np.zeros(4, bool)]
    # Accepting <= 0.2: FAR 0, TAR 2/4; <= 0.5: FAR 1/4, TAR 3/4; <= 0.9: FAR 1, TAR 1.
    assert vf.tar_at_far(d, same, 0.0) == 0.5
    assert vf.tar_at_far(d, same, 0.1) == 0.5
    assert vf.tar_at_far(d, same, 0.25) == 0.75
    assert vf.tar_at_far(d, same, 0.74) == 0.75
    assert vf.tar_at_far(d, same, 1.0) == 1.0
    # A negative tied with the nearest positive: no threshold accepts the positive alone.
    assert vf.tar_at_far([0.1, 0.1, 0.5], [True, False, True], 0.4) == 0.0


def test_best_threshold_by_hand():
    d, same = np.r_[POS, NEG], np.r_[np.ones(4, bool), np.zeros(4, bool)]
    # Correct pairs when accepting <= t: none 4, 0.1 -> 5, 0.2 -> 6, 0.3 -> 5, 0.5 -> 6, then 5, 4, 3, 4.
    # Of the two thresholds with 6/8, the smaller, 0.2, placed halfway to the next distance, 0.3.
    threshold, accuracy = vf.best_threshold(d, same)
    assert threshold == pytest.approx(0.25) and accuracy == 0.75
    assert vf.accuracy_at(d, same, threshold) == 0.75
    assert vf.accuracy_at(d, same, 0.55) == 0.75 and vf.accuracy_at(d, same, 1.0) == 0.5
    threshold, accuracy = vf.best_threshold([0.3, 0.1], [False, False])  # rejecting every pair is best
    assert threshold < 0.1 and accuracy == 1.0
    assert vf.best_threshold([0.3, 0.1], [True, True]) == (0.3, 1.0)  # accepting every pair is best
    assert all(np.isnan(vf.best_threshold([], [])))

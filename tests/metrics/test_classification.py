"""Tests of mlcv.metrics.classification against scikit-learn."""

import warnings

import numpy as np
import pytest
import sklearn.metrics as skm

from mlcv.metrics import classification as cls

K = 4


@pytest.fixture
def preds():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, K, size=50)
    predictions = np.where(rng.random(50) < 0.6, labels, rng.integers(0, K, size=50))
    return labels, predictions


def test_confusion_matrix_vs_sklearn(preds):
    """Unweighted confusion matrix equals sklearn's with labels 0..K-1."""
    labels, predictions = preds
    got = np.asarray(cls.confusion_matrix(labels, predictions, K))
    expected = skm.confusion_matrix(labels, predictions, labels=np.arange(K))
    np.testing.assert_array_equal(got, expected)


def test_confusion_matrix_tiny_by_hand():
    """labels [0, 0, 1, 2], predictions [0, 1, 1, 0] over 3 classes, written out."""
    got = np.asarray(cls.confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 0]), 3))
    np.testing.assert_array_equal(got, [[1, 1, 0], [0, 1, 0], [1, 0, 0]])


def test_confusion_matrix_weighted_vs_sklearn(preds):
    """Weighted confusion matrix equals sklearn's with sample_weight."""
    labels, predictions = preds
    weights = np.random.default_rng(1).random(50).astype(np.float32)
    got = np.asarray(cls.confusion_matrix(labels, predictions, K, weights))
    expected = skm.confusion_matrix(labels, predictions, labels=np.arange(K), sample_weight=weights)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_confusion_matrix_mask_drops_padding(preds):
    """A 0/1 mask as weights equals sklearn's matrix over the unmasked examples only."""
    labels, predictions = preds
    mask = np.r_[np.ones(40), np.zeros(10)].astype(np.float32)
    got = np.asarray(cls.confusion_matrix(labels, predictions, K, mask))
    expected = skm.confusion_matrix(labels[:40], predictions[:40], labels=np.arange(K))
    np.testing.assert_array_equal(got, expected)
    assert got.sum() == 40


def test_accuracy_vs_sklearn(preds):
    """accuracy of the confusion matrix equals accuracy_score, weighted and unweighted."""
    labels, predictions = preds
    c = np.asarray(cls.confusion_matrix(labels, predictions, K))
    assert cls.accuracy(c) == pytest.approx(skm.accuracy_score(labels, predictions))
    w = np.random.default_rng(2).random(50).astype(np.float32)
    cw = np.asarray(cls.confusion_matrix(labels, predictions, K, w))
    assert cls.accuracy(cw) == pytest.approx(skm.accuracy_score(labels, predictions, sample_weight=w), rel=1e-5)


def test_accuracy_empty_is_nan():
    """An all-zero confusion matrix has NaN accuracy."""
    assert np.isnan(cls.accuracy(np.zeros((3, 3))))


def test_per_class_accuracy_vs_recall(preds):
    """Per-class accuracy equals recall_score(average=None)."""
    labels, predictions = preds
    c = np.asarray(cls.confusion_matrix(labels, predictions, K))
    expected = skm.recall_score(labels, predictions, labels=np.arange(K), average=None)
    np.testing.assert_allclose(cls.per_class_accuracy(c), expected)


def test_per_class_accuracy_absent_class_is_nan():
    """A class with no examples gets NaN; the others are diag / row sum: [1/2, 1, nan]."""
    c = np.array([[1, 1, 0], [0, 2, 0], [0, 0, 0]], np.float32)
    np.testing.assert_allclose(cls.per_class_accuracy(c), [0.5, 1.0, np.nan])


def test_summarize_confusion_vs_sklearn(preds):
    """accuracy and mean_class_accuracy equal accuracy_score and balanced_accuracy_score."""
    labels, predictions = preds
    s = cls.summarize_confusion(np.asarray(cls.confusion_matrix(labels, predictions, K)))
    assert sorted(s) == ["accuracy", "mean_class_accuracy"]
    assert s["accuracy"] == pytest.approx(skm.accuracy_score(labels, predictions))
    assert s["mean_class_accuracy"] == pytest.approx(skm.balanced_accuracy_score(labels, predictions))
    assert s["mean_class_accuracy"] != pytest.approx(s["accuracy"])  # the fixture is class-imbalanced enough


def test_summarize_confusion_skips_absent_class():
    """A class never in the labels (but predicted) is left out of the mean, as balanced_accuracy_score does."""
    labels = np.array([0, 0, 0, 1])
    predictions = np.array([0, 2, 2, 1])
    s = cls.summarize_confusion(np.asarray(cls.confusion_matrix(labels, predictions, 3)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns that class 2 is predicted but absent from y_true
        expected = skm.balanced_accuracy_score(labels, predictions)
    assert s["mean_class_accuracy"] == pytest.approx(expected)
    assert s["mean_class_accuracy"] == pytest.approx((1 / 3 + 1) / 2)
    assert s["accuracy"] == pytest.approx(0.5)


def test_per_class_iou_against_sklearn_jaccard():
    rng = np.random.default_rng(0)
    labels, preds = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    c = np.asarray(cls.confusion_matrix(labels, preds, 5))
    expected = skm.jaccard_score(labels, preds, labels=[0, 1, 2, 3], average=None)
    iou = cls.per_class_iou(c)
    np.testing.assert_allclose(iou[:4], expected, rtol=1e-6)
    assert np.isnan(iou[4])  # class 4 never appears

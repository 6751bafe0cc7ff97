"""Tests of mlcv.losses against hand computations."""

import numpy as np
import pytest

from mlcv import losses
from mlcv.config import ConfigError


def test_softmax_cross_entropy_vs_numpy_logsumexp():
    """Per-example loss equals log(sum_k exp(z_k)) - z_label, computed with a stable numpy log-sum-exp."""
    logits = np.array([[2.0, 1.0, 0.1], [0.0, 0.0, 0.0], [-1.0, 3.0, 50.0]], np.float32)
    labels = np.array([0, 2, 1])
    z = logits.astype(np.float64)
    zmax = z.max(axis=1, keepdims=True)
    lse = (zmax + np.log(np.exp(z - zmax).sum(axis=1, keepdims=True)))[:, 0]
    expected = lse - z[np.arange(3), labels]
    got = np.asarray(losses.softmax_cross_entropy(logits, labels))
    assert got.shape == (3,)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # Hand values: uniform logits over 3 classes give log 3; row 3 is about 50 - 3 = 47.
    assert got[1] == pytest.approx(np.log(3.0), rel=1e-6)
    assert got[2] == pytest.approx(47.0, rel=1e-5)


def test_rmse_one_hot_by_hand():
    """L2 norm of scores - one_hot: [1,2,3]-[0,0,1] -> sqrt(1+4+4)=3; [0.5,-1,0]-[1,0,0] -> sqrt(1.25)."""
    scores = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]], np.float32)
    labels = np.array([2, 0])
    got = np.asarray(losses.rmse_one_hot(scores, labels))
    np.testing.assert_allclose(got, [3.0, 1.118033988749895], rtol=1e-6)


def test_rmse_one_hot_exact_fit_has_finite_gradient():
    """At an exact fit the loss is ~0 and its gradient is finite (epsilon inside the sqrt)."""
    import jax

    scores = np.array([[0.0, 1.0, 0.0]], np.float32)
    labels = np.array([1])
    assert float(losses.rmse_one_hot(scores, labels)[0]) == pytest.approx(0.0, abs=1e-5)
    grad = jax.grad(lambda s: losses.rmse_one_hot(s, labels).sum())(scores)
    assert np.all(np.isfinite(np.asarray(grad)))


def test_get_registered():
    """The registry maps softmax_xent and rmse to the loss functions."""
    assert losses.get("softmax_xent") is losses.softmax_cross_entropy
    assert losses.get("rmse") is losses.rmse_one_hot


def test_get_unknown_raises():
    """An unknown loss name raises ConfigError naming it and listing the valid ones."""
    with pytest.raises(ConfigError, match="'hinge'") as info:
        losses.get("hinge")
    assert "rmse" in str(info.value) and "softmax_xent" in str(info.value)


def test_label_smoothing_by_hand():
    """eps-smoothed cross-entropy = (1 - eps) * CE(label) + eps * mean_k(-log p_k), with K = 3, eps = 0.1."""
    logits = np.array([[2.0, 1.0, 0.1], [0.5, -1.0, 3.0]], np.float32)
    labels = np.array([0, 1])
    z = logits.astype(np.float64)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    expected = 0.9 * -logp[np.arange(2), labels] + 0.1 * -logp.mean(axis=1)
    got = np.asarray(losses.softmax_cross_entropy(logits, labels, label_smoothing=0.1))
    np.testing.assert_allclose(got, expected, rtol=1e-5)

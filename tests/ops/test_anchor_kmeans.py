"""k-means of box shapes with the distance 1 - IoU: values by hand, and against scikit-learn's Euclidean k-means."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans

from mlcv.ops.anchor_kmeans import kmeans_anchors, mean_best_iou, shape_iou


def test_shape_iou_by_hand():
    a = np.array([[10, 10], [4, 8]])
    b = np.array([[5, 20], [10, 10], [0, 3]])
    # (10, 10) vs (5, 20): overlap 5 x 10 = 50, union 100 + 100 - 50 = 150. (4, 8) vs (10, 10): 32 / 100.
    # (4, 8) vs (5, 20): 4 x 8 = 32, union 32 + 100 - 32. An empty shape overlaps nothing.
    want = [[50 / 150, 1.0, 0.0], [32 / 100, 32 / 100, 0.0]]
    np.testing.assert_allclose(shape_iou(a, b), want)


@pytest.mark.parametrize("init", ["kmeans++", "random"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_clusters_by_hand(init, seed):
    shapes = np.array([[40, 20], [10, 10], [12, 12], [40, 20]])
    priors, iou = kmeans_anchors(shapes, 2, seed=seed, init=init)
    # Small squares and the tall boxes: centroids the means (11, 11) and (40, 20), smallest first.
    np.testing.assert_allclose(priors, [[11, 11], [40, 20]])
    # IoU of (10, 10) with (11, 11): 100 / 121; of (12, 12): 121 / 144; the tall boxes sit on their prior.
    assert iou == pytest.approx((100 / 121 + 121 / 144 + 2) / 4)
    assert mean_best_iou(shapes, priors) == pytest.approx(iou)


def test_an_emptied_cluster_restarts_on_the_worst_box():
    shapes = np.array([[10, 10]] * 3 + [[40, 40]] * 3, np.float64)
    # A seed whose random start takes two of the equal small boxes: the second cluster gets no box at first.
    seed = next(s for s in range(100) if set(np.random.default_rng(s).choice(6, size=2, replace=False)) <= {0, 1, 2})
    priors, iou = kmeans_anchors(shapes, 2, seed=seed, init="random")
    np.testing.assert_allclose(priors, [[10, 10], [40, 40]])
    assert iou == 1.0


def test_iou_distance_beats_euclidean_on_skewed_sizes():
    """YOLOv2's reason for 1 - IoU: with sizes from 4 to 256 px, Euclidean centroids chase the large boxes."""
    rng = np.random.default_rng(0)
    side = np.exp(rng.uniform(np.log(4), np.log(256), 400))
    shapes = side[:, None] * np.exp(rng.normal(0, 0.2, (400, 2)))
    priors, iou = kmeans_anchors(shapes, 5, seed=0)
    euclidean = KMeans(5, n_init=10, random_state=0).fit(shapes).cluster_centers_
    # The mean IoU with the nearest centroid, written out here rather than through the module.
    inter = np.minimum(shapes[:, None, 0], euclidean[None, :, 0]) * np.minimum(shapes[:, None, 1], euclidean[:, 1])
    union = shapes.prod(1)[:, None] + euclidean.prod(1)[None] - inter
    euclidean_iou = (inter / union).max(1).mean()
    assert iou > euclidean_iou + 0.05, (iou, euclidean_iou)
    # Euclidean k-means spends its centroids on the large boxes: its smallest prior is much larger.
    assert euclidean.prod(1).min() > 2 * priors.prod(1).min()


def test_priors_are_sorted_by_area_and_seeded():
    rng = np.random.default_rng(3)
    shapes = rng.uniform(5, 60, (200, 2))
    a, iou_a = kmeans_anchors(shapes, 9, seed=7)
    b, iou_b = kmeans_anchors(shapes, 9, seed=7)
    np.testing.assert_array_equal(a, b)
    assert iou_a == iou_b
    assert np.all(np.diff(a.prod(1)) >= 0)
    # Each prior is the mean of the shapes nearest to it (Lloyd's fixed point).
    nearest = shape_iou(shapes, a).argmax(1)
    np.testing.assert_allclose(a, [shapes[nearest == c].mean(0) for c in range(9)])


def test_too_few_shapes_and_bad_init_fail():
    with pytest.raises(ValueError, match="k = 3"):
        kmeans_anchors(np.array([[1, 1], [2, 2], [0, 5]]), 3)  # the empty shape does not count
    with pytest.raises(ValueError, match="init"):
        kmeans_anchors(np.ones((4, 2)), 2, init="sorted")

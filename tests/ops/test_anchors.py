"""Anchors listed by hand, matching with its thresholds and low-quality rule, and balanced sampling counts."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from mlcv.ops import anchors as an

match = jax.jit(an.match, static_argnames="allow_low_quality")  # thresholds traced: one compilation
sample = jax.jit(an.sample_balanced, static_argnames=("num_samples", "positive_fraction"))


def test_anchors_of_a_2x2_map_listed_by_hand():
    got = np.asarray(an.generate_anchors((2, 2), stride=8, scales=(1,), aspect_ratios=(0.5, 1, 2)))
    # Side 8 at ratio 1; ratio h/w = 1/2 keeps the area 64: h = 8 / sqrt(2) = 5.656854, w = 8 sqrt(2) = 11.313708,
    # half-sides 2.828427 and 5.656854. Cells centred at (i + 0.5) * 8 = 4 or 12, row by row; a cell's 3 together.
    expected = [
        [1.171573, -1.656854, 6.828427, 9.656854],  # cell (0, 0), centre (4, 4), ratio 0.5: wide
        [0, 0, 8, 8],  # ratio 1
        [-1.656854, 1.171573, 9.656854, 6.828427],  # ratio 2: tall
        [1.171573, 6.343146, 6.828427, 17.656854],  # cell (0, 1), centre (4, 12)
        [0, 8, 8, 16],
        [-1.656854, 9.171573, 9.656854, 14.828427],
        [9.171573, -1.656854, 14.828427, 9.656854],  # cell (1, 0), centre (12, 4)
        [8, 0, 16, 8],
        [6.343146, 1.171573, 17.656854, 6.828427],
        [9.171573, 6.343146, 14.828427, 17.656854],  # cell (1, 1), centre (12, 12)
        [8, 8, 16, 16],
        [6.343146, 9.171573, 17.656854, 14.828427],
    ]
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert got.dtype == np.float32


def test_anchor_order_sizes_and_ratios():
    got = np.asarray(an.generate_anchors((1, 2), stride=16, scales=(1, 2), aspect_ratios=(0.25, 4)))
    # Cells centred at (8, 8), (8, 24); scales outer, ratios inner: sides 16 and 32, and ratio 1/4 of side 16
    # is 8 x 32, ratio 4 is 32 x 8 (of side 32: 16 x 64 and 64 x 16).
    expected = [
        [4, -8, 12, 24],
        [-8, 4, 24, 12],
        [0, -24, 16, 40],
        [-24, 0, 40, 16],
        [4, 8, 12, 40],
        [-8, 20, 24, 28],
        [0, -8, 16, 56],
        [-24, 16, 40, 32],
    ]
    np.testing.assert_array_equal(got, expected)
    h, w = got[:, 2] - got[:, 0], got[:, 3] - got[:, 1]
    np.testing.assert_allclose(h / w, [0.25, 4] * 4)
    np.testing.assert_allclose(h * w, [256, 256, 1024, 1024] * 2)


def test_multilevel_anchors_concatenate_levels():
    got = np.asarray(an.multilevel_anchors([(2, 2), (1, 1)], strides=(8, 16), sizes=(16, (32, 64))))
    assert got.shape == (2 * 2 * 3 + 1 * 1 * 6, 4)
    np.testing.assert_array_equal(got[:12], an.generate_anchors((2, 2), 8, scales=(2,)))
    np.testing.assert_array_equal(got[12:], an.generate_anchors((1, 1), 16, scales=(2, 4)))
    with pytest.raises(ValueError):
        an.multilevel_anchors([(2, 2)], strides=(8, 16), sizes=(16, 32))


ANCHORS = np.array(
    [
        [0, 0, 10, 10],  # 0: the first real gt exactly
        [0, 5, 10, 15],  # 1: IoU 50/150 = 1/3 with it: between the thresholds
        [20, 20, 30, 30],  # 2: IoU 25/100 with the small gt, its best anchor
        [0, 0, 10, 9],  # 3: IoU 90/100
        [50, 50, 60, 60],  # 4: overlaps nothing
        [15, 15, 25, 25],  # 5: IoU 25/100 with the small gt too: a tie for its best
        [0, 0, 10, 7],  # 6: IoU exactly 0.7
        [0, 0, 10, 3],  # 7: IoU exactly 0.3
    ],
    np.float32,
)
# Row 0 is padding; were it real, it would take anchor 0 (first of two equal IoUs) from row 1.
GT = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 25, 25]], np.float32)
GT_MASK = np.array([0, 1, 1], np.float32)


def test_match_thresholds_low_quality_rule_and_padding():
    got = np.asarray(match(ANCHORS, GT, GT_MASK, positive_iou=0.7, negative_iou=0.3))
    # >= 0.7 positive, < 0.3 negative (-1), between ignored (-2); anchors 2 and 5 tie as the small gt's best.
    np.testing.assert_array_equal(got, [1, -2, 2, 1, -1, 2, 1, -2])
    strict = np.asarray(match(ANCHORS, GT, GT_MASK, positive_iou=0.7, negative_iou=0.3, allow_low_quality=False))
    np.testing.assert_array_equal(strict, [1, -2, -1, 1, -1, -1, 1, -2])
    # Fast R-CNN's thresholds: 0.5 positive, below 0.5 negative (RetinaNet: 0.4), so nothing is ignored.
    np.testing.assert_array_equal(
        match(ANCHORS, GT, GT_MASK, positive_iou=0.5, negative_iou=0.5), [1, -1, 2, 1, -1, 2, 1, -1]
    )
    assert got.dtype == np.int32


def test_match_forced_anchor_regresses_to_its_own_best_gt():
    anchors = np.array([[0, 0, 10, 10], [40, 40, 50, 50]], np.float32)
    # gt 0 is a 2x2 box inside anchor 0 (IoU 0.04): anchor 0 is its best, but anchor 0 overlaps gt 1 more (0.5).
    gt = np.array([[1, 1, 3, 3], [0, 0, 10, 5]], np.float32)
    got = np.asarray(match(anchors, gt, np.ones(2)))
    np.testing.assert_array_equal(got, [1, -1])


def test_match_without_real_gt_and_a_gt_outside_every_anchor():
    np.testing.assert_array_equal(match(ANCHORS, GT, np.zeros(3), positive_iou=0.7, negative_iou=0.3), -1)
    np.testing.assert_array_equal(an.match(ANCHORS, np.zeros((0, 4), np.float32)), -1)
    # A real gt overlapping no anchor forces nothing (the reference code would make every IoU-0 anchor positive).
    far = np.array([[100, 100, 110, 110]], np.float32)
    np.testing.assert_array_equal(match(ANCHORS, far, np.ones(1)), -1)


def test_match_on_a_batch_with_vmap():
    gts = np.stack([GT, GT[[2, 1, 0]]])
    masks = np.stack([GT_MASK, GT_MASK[[2, 1, 0]]])
    got = np.asarray(jax.jit(jax.vmap(lambda g, m: an.match(ANCHORS, g, m)))(gts, masks))
    np.testing.assert_array_equal(got[0], [1, -2, 2, 1, -1, 2, 1, -2])
    np.testing.assert_array_equal(got[1], [1, -2, 0, 1, -1, 0, 1, -2])  # the gt rows reversed


def _labels(num_pos: int, num_neg: int, num_ignored: int) -> np.ndarray:
    # Padded with ignored entries to one length, so that the jitted sampler compiles once.
    num_ignored = max(num_ignored, 140 - num_pos - num_neg)
    labels = np.array([1] * num_pos + [0] * num_neg + [-1] * num_ignored, np.int32)
    return np.random.default_rng(num_pos).permutation(labels)


@pytest.mark.parametrize(
    ("counts", "expected"),
    [((10, 100, 30), (8, 24)), ((3, 100, 30), (3, 29)), ((3, 5, 30), (3, 5)), ((0, 100, 0), (0, 32))],
)
def test_sample_balanced_counts(counts, expected):
    labels = _labels(*counts)
    mask = np.asarray(sample(jax.random.key(0), labels, num_samples=32, positive_fraction=0.25))
    assert (mask & (labels == 1)).sum() == expected[0]
    assert (mask & (labels == 0)).sum() == expected[1]
    assert not (mask & (labels == -1)).any()


def test_sample_balanced_is_uniform_over_candidates():
    labels = _labels(10, 40, 20)
    keys = jax.random.split(jax.random.key(1), 4000)
    masks = np.asarray(jax.jit(jax.vmap(lambda k: an.sample_balanced(k, labels, 16, 0.25)))(keys))
    assert (masks[:, labels == 1].sum(1) == 4).all() and (masks[:, labels == 0].sum(1) == 12).all()
    # Each positive is taken with probability 4/10, each negative with 12/40; 4000 draws: std <= 0.008.
    freq = masks.mean(0)
    np.testing.assert_allclose(freq[labels == 1], 0.4, atol=0.035)
    np.testing.assert_allclose(freq[labels == 0], 0.3, atol=0.035)
    assert (freq[labels == -1] == 0).all()
    assert len({m.tobytes() for m in masks[:50]}) == 50  # different keys, different subsets


def test_sample_balanced_when_num_samples_exceeds_the_anchors():
    labels = np.array([1, 0, 0, -1], np.int32)
    mask = np.asarray(sample(jax.random.key(2), labels, num_samples=256, positive_fraction=0.5))
    np.testing.assert_array_equal(mask, [True, True, True, False])

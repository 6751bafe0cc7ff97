"""Static-shape NMS against OpenCV's ``dnn.NMSBoxes`` and a sequential greedy reference, per image and batched."""

from __future__ import annotations

import cv2
import jax
import numpy as np
import pytest

from mlcv.ops import nms as ops

_nms = jax.jit(ops.nms, static_argnames="max_output")
batched_nms = jax.jit(ops.batched_nms, static_argnames="max_output")


def nms(boxes, scores, iou_threshold, max_output, score_threshold=-np.inf, valid=None):
    """The jitted op with every argument given, so that calls differing only in defaults share one compilation."""
    valid = np.ones(len(scores), bool) if valid is None else valid
    return _nms(boxes, scores, iou_threshold, max_output=max_output, score_threshold=score_threshold, valid=valid)


def _random_set(seed: int, n: int, distinct: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Boxes in a few clusters, so that many overlap; scores distinct, or rounded to create ties."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(10, 90, (5, 2))[rng.integers(0, 5, n)] + rng.normal(0, 4, (n, 2))
    hw = rng.uniform(6, 20, (n, 2))
    boxes = np.concatenate([centres - hw / 2, centres + hw / 2], axis=1).astype(np.float32)
    scores = (rng.permutation(n) + 1) / (n + 1) if distinct else np.round(rng.uniform(0, 1, n), 1)
    return boxes, scores.astype(np.float32)


def _greedy_reference(boxes, scores, iou_threshold, score_threshold=-np.inf, classes=None) -> list[int]:
    """The textbook loop: visit by decreasing score (stable), keep a box unless a kept one overlaps it too much."""
    b = boxes.astype(np.float64)
    kept: list[int] = []
    for i in sorted(np.flatnonzero(scores > score_threshold), key=lambda i: -scores[i]):
        for j in kept:
            if classes is not None and classes[i] != classes[j]:
                continue
            ih = max(min(b[i, 2], b[j, 2]) - max(b[i, 0], b[j, 0]), 0)
            iw = max(min(b[i, 3], b[j, 3]) - max(b[i, 1], b[j, 1]), 0)
            area = lambda k: (b[k, 2] - b[k, 0]) * (b[k, 3] - b[k, 1])  # noqa: E731
            if ih * iw / (area(i) + area(j) - ih * iw) > iou_threshold:
                break
        else:
            kept.append(int(i))
    return kept


def _opencv(boxes, scores, iou_threshold, score_threshold=0.0) -> list[int]:
    # OpenCV wants (x, y, width, height); as floats they are Rect2d, without rounding. Its score threshold must
    # be >= 0, so scores here are positive.
    xywh = [(float(x0), float(y0), float(x1 - x0), float(y1 - y0)) for y0, x0, y1, x1 in boxes]
    return list(np.asarray(cv2.dnn.NMSBoxes(xywh, scores.tolist(), score_threshold, iou_threshold)).ravel())


def _kept(indices, mask) -> list[int]:
    indices, mask = np.asarray(indices), np.asarray(mask)
    assert (indices[~mask] == -1).all() and mask[: mask.sum()].all()  # padding only at the end
    return indices[mask].tolist()


def test_nms_by_hand():
    b = np.array([[0, 0, 10, 10], [0, 1, 10, 11], [20, 20, 30, 30], [1, 0, 11, 10], [21, 21, 31, 31]], np.float32)
    s = np.array([0.9, 0.95, 0.5, 0.3, 0.6], np.float32)
    # 1 (0.95) suppresses 0 (IoU 90/110) and 3 (IoU 81/119 = 0.68); 4 (0.6) suppresses 2 (IoU 81/119)
    assert _kept(*_nms(b, s, 0.5, max_output=6)) == [1, 4]  # valid and score_threshold left out
    # at 0.7 only 0 goes (IoU 0.818 with 1); the others (IoU 0.68) stay, in score order
    idx, mask = nms(b, s, 0.7, max_output=6)
    np.testing.assert_array_equal(idx, [1, 4, 2, 3, -1, -1])
    np.testing.assert_array_equal(mask, [1, 1, 1, 1, 0, 0])
    assert _kept(*nms(b, s, 0.7, max_output=2)) == [1, 4]  # the first two of the full list
    assert _kept(*nms(b, s, 0.7, max_output=6, score_threshold=0.5)) == [1, 4]  # 0.5 itself is out
    # An invalid row neither survives nor suppresses: without box 1, box 0 keeps and removes 3.
    assert _kept(*nms(b, s, 0.5, max_output=6, valid=np.array([1, 0, 1, 1, 1]))) == [0, 4]


@pytest.mark.parametrize(("seed", "threshold"), [(0, 0.3), (1, 0.5), (2, 0.7)])
def test_nms_matches_opencv_on_random_sets(seed, threshold):
    boxes, scores = _random_set(seed, 150)
    expected = _opencv(boxes, scores, threshold)
    assert 10 < len(expected) < 140  # suppression happened
    assert _kept(*nms(boxes, scores, threshold, max_output=150)) == expected
    # OpenCV's score threshold keeps scores strictly above it, as here.
    assert _kept(*nms(boxes, scores, threshold, 150, 0.4)) == _opencv(boxes, scores, threshold, 0.4)


def test_opencv_conventions_are_ours():
    """Width without + 1, IoU equal to the threshold survives, score equal to the threshold is out, ties stable."""
    cases = [
        # (0,0,10,10) and (0,5,10,15): IoU 50/150 = 1/3 without + 1 (0.375 with it)
        (np.array([[0, 0, 10, 10], [0, 5, 10, 15]]), [0.9, 0.8], 0.34, 0.0, [0, 1]),
        (np.array([[0, 0, 10, 10], [0, 5, 10, 15]]), [0.9, 0.8], 0.33, 0.0, [0]),
        # IoU exactly 0.5: kept at threshold 0.5
        (np.array([[0, 0, 4, 4], [0, 0, 2, 4]]), [0.9, 0.8], 0.5, 0.0, [0, 1]),
        (np.array([[10, 10, 14, 14], [0, 0, 4, 4]]), [0.5, 0.8], 0.5, 0.5, [1]),
        # equal scores: input order decides
        (np.array([[10, 10, 14, 14], [0, 0, 4, 4], [0, 0, 4, 4]]), [0.5, 0.5, 0.5], 0.5, 0.0, [0, 1]),
        (np.array([[0, 0, 4, 4], [0, 0, 4, 4], [0, 0, 4, 4]]), [0.5, 0.5, 0.5], 0.5, 0.0, [0]),
    ]
    for boxes, scores, iou_thr, score_thr, expected in cases:
        boxes, scores = boxes.astype(np.float32), np.array(scores, np.float32)
        assert _opencv(boxes, scores, iou_thr, score_thr) == expected
        assert _kept(*nms(boxes, scores, iou_thr, 3, score_thr)) == expected
    # The one difference: OpenCV gives two empty boxes overlap 1, IoU here is 0.
    empty = np.zeros((2, 4), np.float32)
    assert _opencv(empty, np.array([0.9, 0.8], np.float32), 0.5) == [0]
    assert _kept(*nms(empty, np.array([0.9, 0.8], np.float32), 0.5, 3, 0.0)) == [0, 1]


@pytest.mark.parametrize("seed", [3, 4])
def test_nms_matches_the_sequential_reference_with_ties(seed):
    boxes, scores = _random_set(seed, 150, distinct=False)
    assert len(set(scores.tolist())) <= 11  # scores to one decimal: many ties, broken by index
    for threshold in (0.2, 0.6):
        expected = _greedy_reference(boxes, scores, threshold, score_threshold=0.15)
        assert _kept(*nms(boxes, scores, threshold, 150, 0.15)) == expected
        # A short output is the first max_output of the full list.
        assert _kept(*nms(boxes, scores, threshold, 7, 0.15)) == expected[:7]


def test_batched_nms_is_class_aware_per_image():
    sets = [_random_set(seed, 80) for seed in (5, 6, 7)]
    boxes, scores = np.stack([b for b, _ in sets]), np.stack([s for _, s in sets])
    classes = np.random.default_rng(8).integers(0, 3, (3, 80))
    valid = np.ones((3, 80), bool)
    valid[2, 60:] = False  # padding rows of the last image
    idx, mask = batched_nms(boxes, scores, classes, 0.5, max_output=80, valid=valid)
    assert idx.shape == mask.shape == (3, 80)
    for i in range(3):
        n = 60 if i == 2 else 80
        ref = _greedy_reference(boxes[i, :n], scores[i, :n], 0.5, classes=classes[i, :n])
        assert _kept(idx[i], mask[i]) == ref
        # The same as OpenCV's NMS class by class, merged by score.
        per_class = []
        for c in range(3):
            rows = np.flatnonzero(classes[i, :n] == c)
            per_class += rows[_opencv(boxes[i, rows], scores[i, rows], 0.5)].tolist()
        assert sorted(per_class, key=lambda j: -scores[i, j]) == ref
    # Class-agnostic with classes=None, truncated to max_output.
    idx, mask = batched_nms(boxes, scores, None, 0.5, max_output=20)
    for i in range(3):
        assert _kept(idx[i], mask[i]) == _greedy_reference(boxes[i], scores[i], 0.5)[:20]


def test_nms_of_no_boxes_and_all_below_threshold():
    assert _kept(*ops.nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5, 3)) == []
    boxes, scores = _random_set(9, 150)
    idx, mask = nms(boxes, scores, 0.5, max_output=150, score_threshold=2.0)
    np.testing.assert_array_equal(idx, -1)
    assert not np.asarray(mask).any()


def test_top_k_masks_invalid_entries_and_pads():
    scores = np.array([0.1, 0.9, 0.9, 0.5, -np.inf], np.float32)
    values, idx, mask = jax.jit(ops.top_k, static_argnums=1)(scores, 7, np.array([1, 1, 0, 1, 1]))
    np.testing.assert_array_equal(idx, [1, 3, 0, -1, -1, -1, -1])
    np.testing.assert_array_equal(mask, [1, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(values[:3], np.array([0.9, 0.5, 0.1], np.float32))
    # Equal scores in index order; leading batch axes.
    values, idx, mask = ops.top_k(np.array([[0.2, 0.7, 0.7], [0.3, 0.1, 0.2]], np.float32), 2)
    np.testing.assert_array_equal(idx, [[1, 2], [0, 2]])

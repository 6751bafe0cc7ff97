"""Boxes: IoU and NMS on hand-worked examples and against OpenCV's ``dnn.NMSBoxes``."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mlcv.ops import boxes


def test_area_and_iou_by_hand():
    a = np.array([[0, 0, 2, 2], [0, 0, 4, 4]])
    b = np.array([[1, 1, 3, 3], [10, 10, 11, 11], [0, 0, 2, 2]])
    np.testing.assert_array_equal(boxes.area(a), [4, 16])
    # [0,2]^2 and [1,3]^2 share a unit square: 1 / (4 + 4 - 1); inside [0,4]^2 it is 4 / 16
    expected = np.array([[1 / 7, 0, 1], [4 / 16, 0, 4 / 16]])
    np.testing.assert_allclose(boxes.iou(a, b), expected)
    np.testing.assert_allclose(boxes.iou(b, a), expected.T)
    # degenerate boxes: no NaN
    assert boxes.iou([0, 0, 0, 0], [0, 0, 0, 0])[0, 0] == 0.0


def test_nms_by_hand():
    b = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 1, 10, 11], [21, 21, 31, 31]], float)
    s = np.array([0.9, 0.95, 0.5, 0.3, 0.6])
    # 1 (0.95) suppresses 0 (IoU 90/110) and 3 (IoU 81/119 = 0.68); 4 (0.6) suppresses 2 (IoU 81/119)
    np.testing.assert_array_equal(boxes.nms(b, s, 0.5), [1, 4])
    # at 0.7 only 0 goes (IoU 0.818 with 1); the others (IoU 0.68) stay, in score order
    np.testing.assert_array_equal(boxes.nms(b, s, 0.7), [1, 4, 2, 3])
    np.testing.assert_array_equal(boxes.nms(b, s, 0.5, max_out=1), [1])
    assert boxes.nms(np.zeros((0, 4)), np.zeros(0), 0.5).size == 0


@pytest.mark.parametrize("threshold", [0.2, 0.4, 0.6])
def test_nms_matches_opencv(threshold):
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 60, size=(200, 2))
    wh = rng.uniform(5, 30, size=(200, 2))
    b = np.concatenate([xy, xy + wh], axis=1)
    s = rng.random(200)
    ref = cv2.dnn.NMSBoxes(np.concatenate([xy, wh], 1).tolist(), s.tolist(), 0.0, threshold)
    np.testing.assert_array_equal(boxes.nms(b, s, threshold), np.asarray(ref).ravel())


@pytest.mark.parametrize(("second", "iou"), [([0, 0, 4, 2], 0.5), ([0, 0, 1, 4], 0.25)])
def test_nms_keeps_a_box_whose_iou_equals_the_threshold_as_opencv_does(second, iou):
    """At IoU exactly equal to the threshold the box survives, in mlcv and in OpenCV's ``dnn.NMSBoxes``.

    By hand: ``[0, 4]^2`` and ``[0, 4] x [0, 2]`` share 8 of a 16 union, IoU 1/2; with ``[0, 1] x [0, 4]`` it is 4 / 16
    = 1/4. Both are exact in float32 and float64, so the comparison meets the threshold itself. OpenCV suppresses
    only when the overlap is strictly above it (``keep = overlap <= threshold``); so does mlcv. One float32 step
    below the threshold (OpenCV takes it as a float32), both suppress the second box.
    """
    b = np.array([[0, 0, 4, 4], second], float)
    s = [0.9, 0.8]
    assert boxes.iou(b[0], b[1])[0, 0] == iou
    below = float(np.nextafter(np.float32(iou), np.float32(0)))
    xywh = np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], 1).tolist()
    for threshold, expected in [(iou, [0, 1]), (below, [0])]:
        np.testing.assert_array_equal(np.asarray(cv2.dnn.NMSBoxes(xywh, s, 0.0, threshold)).ravel(), expected)
        np.testing.assert_array_equal(boxes.nms(b, s, threshold), expected)
    # "Above the threshold" means the same in the other two users of it: no overlap counted, no vote taken.
    np.testing.assert_array_equal(boxes.count_overlaps(b, iou), [0, 0])
    np.testing.assert_array_equal(boxes.nms_vote(b, s, iou)[1], [1, 1])


def test_count_overlaps():
    b = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 1, 10, 11], [50, 50, 60, 60]], float)
    np.testing.assert_array_equal(boxes.count_overlaps(b, 0.5), [2, 2, 2, 0])


def test_group_rectangles_by_hand():
    b = np.array(
        [
            [10, 10, 30, 30],  # three near copies of one 20-pixel box: edges within 0.2 * (20 + 20) / 2 = 4
            [11, 10, 31, 30],
            [10, 12, 30, 32],
            [15, 15, 20, 20],  # two copies of an "eye" box inside it
            [15, 15, 20, 20],
            [100, 100, 120, 120],  # a lone box
        ],
        float,
    )
    grouped, counts = boxes.group_rectangles(b, min_neighbors=1, eps=0.2)
    # the lone box has no neighbour; the eye pair (2 < 3 members) lies inside the face box grown by 0.2 * 20
    np.testing.assert_allclose(grouped, [[31 / 3, 32 / 3, 91 / 3, 92 / 3]])
    np.testing.assert_array_equal(counts, [3])
    # min_neighbors 0: no grouping at all
    same, ones = boxes.group_rectangles(b, min_neighbors=0)
    np.testing.assert_array_equal(same, b)
    np.testing.assert_array_equal(ones, np.ones(6))
    # with 4 members the inner cluster stays: the face box would need more than max(3, 4) members to absorb it
    b4 = np.concatenate([b[:3], np.repeat(b[3:4], 4, axis=0)])
    grouped, counts = boxes.group_rectangles(b4, min_neighbors=1)
    assert sorted(counts.tolist()) == [3, 4]
    # min_neighbors 3: the 3-box cluster goes (OpenCV keeps clusters of more than min_neighbors boxes)
    assert len(boxes.group_rectangles(b[:3], min_neighbors=3)[0]) == 0


def test_group_rectangles_is_transitive():
    # a ~ b and b ~ c (edges 4 apart, delta = 0.2 * 20 = 4) but a and c are 8 apart: still one cluster
    b = np.array([[0, 0, 20, 20], [4, 0, 24, 20], [8, 0, 28, 20]], float)
    grouped, counts = boxes.group_rectangles(b, min_neighbors=2, eps=0.2)
    np.testing.assert_allclose(grouped, [[4, 0, 24, 20]])
    np.testing.assert_array_equal(counts, [3])
    # chunking the similarity rows does not change the result
    grouped2, _ = boxes.group_rectangles(b, min_neighbors=2, eps=0.2, chunk=1)
    np.testing.assert_array_equal(grouped, grouped2)


def test_nms_vote_by_hand():
    b = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 1, 10, 11], [21, 21, 31, 31]], float)
    s = np.array([0.9, 0.95, 0.5, 0.3, 0.6])
    # as in test_nms_by_hand at 0.5: box 1 takes 0 and 3 with it, box 4 takes 2; each becomes its cluster's mean
    means, counts, best = boxes.nms_vote(b, s, 0.5)
    np.testing.assert_array_equal(best, [1, 4])
    np.testing.assert_array_equal(counts, [3, 2])
    np.testing.assert_allclose(means, [[1 / 3, 1 / 3, 31 / 3, 31 / 3], [20.5, 20.5, 30.5, 30.5]])
    # a chain 0 ~ 1 ~ 2 (IoU 75 / 125 = 0.6 each step, 0 and 2 only 50 / 150): box voting does not chain
    chain = np.array([[0, 0, 10, 10], [2.5, 0, 12.5, 10], [5, 0, 15, 10]], float)
    means, counts, best = boxes.nms_vote(chain, np.array([1.0, 2.0, 0.5]), 0.5)
    np.testing.assert_array_equal(best, [1])
    np.testing.assert_array_equal(counts, [3])
    means, counts, best = boxes.nms_vote(chain, np.array([3.0, 2.0, 0.5]), 0.5)
    np.testing.assert_array_equal(best, [0, 2])
    np.testing.assert_array_equal(counts, [2, 1])

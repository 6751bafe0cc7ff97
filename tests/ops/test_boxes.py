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


def test_count_overlaps():
    b = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 1, 10, 11], [50, 50, 60, 60]], float)
    np.testing.assert_array_equal(boxes.count_overlaps(b, 0.5), [2, 2, 2, 0])

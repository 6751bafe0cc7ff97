"""The detection papers' resizing: the shorter side to ``size``, the longer one capped, then padding to a fixed size."""

from __future__ import annotations

import numpy as np
import pytest

from mlcv.data import ops


def _example(h: int, w: int) -> dict:
    image = np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3)
    boxes = np.array([[10, 20, 30, 60]], np.float32)
    return {"image": image, "boxes": boxes, "box_labels": np.array([4]), "segmentation": np.ones((h, w), np.uint8)}


@pytest.mark.parametrize(
    "shape, want",
    [
        ((480, 640), (800, 1067)),  # 800 / 480 = 5 / 3: 640 * 5 / 3 = 1066.7, under 1333
        ((300, 1000), (400, 1333)),  # 800 / 300 would make 2667 > 1333: the scale is 1333 / 1000 instead
    ],
)
def test_resize_short_caps_the_longer_side(shape, want):
    op = ops.parse("resize_short(800, max_size=1333)")
    out = op(_example(*shape), np.random.default_rng(0))
    assert out["image"].shape[:2] == want
    scale = want[0] / shape[0]
    np.testing.assert_allclose(out["boxes"], [[10 * scale, 20 * scale, 30 * scale, 60 * scale]], rtol=2e-3)


def test_pad_to_keeps_pixels_and_boxes():
    ex = {**_example(5, 7), "boxes": np.array([[1, 2, 4, 6.5]], np.float32)}
    out = ops.parse("pad_to(8)")(ex, np.random.default_rng(0))
    assert out["image"].shape == (8, 8, 3)
    np.testing.assert_array_equal(out["image"][:5, :7], ex["image"])
    assert not out["image"][5:].any() and not out["image"][:, 7:].any()
    assert (out["segmentation"][5:] == 255).all()  # padded areas are "ignore" for segmentation
    np.testing.assert_array_equal(out["boxes"], ex["boxes"])


def test_pad_to_refuses_a_larger_image():
    with pytest.raises(ValueError, match=r"pad_to\(4\): image \(5, 7, 3\) is larger"):
        ops.parse("pad_to(4)")(_example(5, 7), np.random.default_rng(0))

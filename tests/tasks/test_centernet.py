"""CenterNet's targets, loss and decoding against values worked by hand."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlcv.tasks import centernet as cn

BOXES = jnp.array([[[0, 0, 40, 40], [10, 50, 30, 90], [0, 0, 0, 0]]], jnp.float32)
LABELS = jnp.array([[3, 1, 0]])
VALID = jnp.array([[1, 1, 0]], jnp.float32)


def test_gaussian_radius_by_hand():
    # A 10x10 box, min_overlap 0.7, the three cases of CornerNet's code:
    # r1 = (20 + sqrt(400 - 4 * 30 / 1.7)) / 2 = 19.0747
    # r2 = (40 + sqrt(1600 - 16 * 30)) / 2 = 36.7332
    # r3 = (-28 + sqrt(784 - 4 * 2.8 * -30)) / 2 = (-28 + 33.4664) / 2 = 2.7332
    assert float(cn.gaussian_radius(jnp.float32(10), jnp.float32(10))) == pytest.approx(2.7332, abs=1e-4)


def test_heatmap_targets_by_hand():
    heat, centres = cn.heatmap_targets(BOXES, LABELS, VALID, 4, (24, 24), 5)
    # Box 0: centre (20, 20) px -> cell (5, 5); size 10 x 10 cells -> radius floor(2.73) = 2, sigma 5 / 6.
    assert float(heat[0, 5, 5, 3]) == 1.0
    assert float(heat[0, 5, 6, 3]) == pytest.approx(math.exp(-1 / (2 * (5 / 6) ** 2)), rel=1e-6)
    assert float(heat[0, 7, 7, 3]) == pytest.approx(math.exp(-8 / (2 * (5 / 6) ** 2)), rel=1e-5)
    assert float(heat[0, 5, 8, 3]) == 0.0  # outside the (2r + 1)^2 window
    assert float(heat[0, 5, 5, 1]) == 0.0  # another class's map
    # Box 1: centre (20, 70) px -> (5, 17.5) cells -> cell (5, 17), class 1; the padding row draws nothing.
    assert float(heat[0, 5, 17, 1]) == 1.0
    np.testing.assert_array_equal(np.argwhere(np.asarray(centres[0])), [[5, 5, 3], [5, 17, 1]])


def test_focal_loss_by_hand():
    logits = jnp.array([0.0, 2.0, -1.0])
    heat = jnp.array([1.0, 0.5, 0.0])
    centres = jnp.array([1.0, 0.0, 0.0])
    p = 1 / (1 + np.exp(-np.array([0.0, 2.0, -1.0])))
    want = [-(0.5**2) * math.log(0.5), -(0.5**4) * p[1] ** 2 * math.log(1 - p[1]), -(p[2] ** 2) * math.log(1 - p[2])]
    np.testing.assert_allclose(cn.focal_loss_terms(logits, heat, centres), want, rtol=1e-6)


def _perfect_heads(boxes, labels, valid, num_classes=5):
    """Heads that a perfect network would output for these boxes (stride 4, a 24 x 24 grid)."""
    heat, _ = cn.heatmap_targets(boxes, labels, valid, 4, (24, 24), num_classes)
    size = np.zeros((1, 24, 24, 2), np.float32)
    offset = np.zeros((1, 24, 24, 2), np.float32)
    for b in np.asarray(boxes[0])[np.asarray(valid[0]) > 0]:
        centre = (b[:2] + b[2:]) / 8
        y, x = np.floor(centre).astype(int)
        size[0, y, x], offset[0, y, x] = (b[2:] - b[:2]) / 4, centre - [y, x]
    return heat, jnp.asarray(size), jnp.asarray(offset)


def test_decode_recovers_the_boxes_of_perfect_heads():
    heat, size, offset = _perfect_heads(BOXES, LABELS, VALID)
    det = jax.jit(cn.decode, static_argnums=(3, 4, 5))(heat, size, offset, 4, (96, 96), 5)
    np.testing.assert_allclose(det["det_boxes"][0, :2], BOXES[0, :2], atol=1e-5)
    np.testing.assert_array_equal(det["det_classes"][0, :2], [3, 1])
    np.testing.assert_array_equal(det["det_scores"][0, :2], [1, 1])
    # Off-peak cells of the Gaussians are not their 3x3 maxima: exactly two detections remain.
    np.testing.assert_array_equal(det["det_mask"][0], [1, 1, 0, 0, 0])


def test_losses_of_perfect_size_and_offset_are_zero():
    from types import SimpleNamespace

    task = object.__new__(cn.CenterNetTask)  # the loss terms only read these settings
    task.num_classes, task.min_overlap, task.size_weight, task.offset_weight = 5, 0.7, 0.1, 1.0
    heat, size, offset = _perfect_heads(BOXES, LABELS, VALID)
    batch = {"image": jnp.zeros((1, 96, 96, 3)), "boxes": BOXES, "box_labels": LABELS, "box_mask": VALID}
    logits = jnp.log(heat + 1e-9) - jnp.log1p(-heat + 1e-9)
    losses = task.losses({"heatmap": logits, "size": size, "offset": offset}, batch, SimpleNamespace())
    assert float(losses["size_l1"]) == pytest.approx(0.0, abs=1e-6)
    assert float(losses["offset_l1"]) == pytest.approx(0.0, abs=1e-6)
    # Moving one size by 1 cell costs 0.1 * 1 / 2 objects.
    worse = task.losses({"heatmap": logits, "size": size.at[0, 5, 5, 0].add(1.0), "offset": offset}, batch, None)
    assert float(worse["size_l1"]) == pytest.approx(0.05, rel=1e-5)


def test_degenerate_boxes_and_empty_images_give_finite_losses():
    """A zero-width box, a zero-area box and an image without objects: every loss term stays finite."""
    task = object.__new__(cn.CenterNetTask)
    task.num_classes, task.min_overlap, task.size_weight, task.offset_weight = 5, 0.7, 0.1, 1.0
    boxes = jnp.array([[[10, 20, 30, 20], [40, 40, 40, 40]], [[0, 0, 0, 0], [0, 0, 0, 0]]], jnp.float32)
    batch = {
        "image": jnp.zeros((2, 96, 96, 3)),
        "boxes": boxes,
        "box_labels": jnp.array([[1, 2], [0, 0]]),
        "box_mask": jnp.array([[1, 1], [0, 0]], jnp.float32),
    }
    outputs = {
        "heatmap": jnp.zeros((2, 24, 24, 5)),
        "size": jnp.ones((2, 24, 24, 2)),
        "offset": jnp.zeros((2, 24, 24, 2)),
    }
    losses = task.losses(outputs, batch, None)
    assert all(np.isfinite(float(v)) for v in losses.values())
    assert np.isfinite(np.asarray(task._terms(outputs, batch)["focal"])).all()

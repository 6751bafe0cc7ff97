"""RetinaNet's focal loss, anchor targets, decoding and model shapes against values worked by hand."""

from __future__ import annotations

import math
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mlcv import models
from mlcv.models.retinanet import level_shapes
from mlcv.ops import anchors as anchor_ops
from mlcv.ops.box_coding import encode
from mlcv.tasks import retinanet as rn

# Two anchors of side 16 at (8, 8) and (8, 24), one of side 32 at (16, 16) (a tiny hand-checkable set).
ANCHORS = jnp.array([[0, 0, 16, 16], [0, 16, 16, 32], [0, 0, 32, 32]], jnp.float32)
BOXES = jnp.array([[[0, 0, 16, 16], [0, 14, 16, 30], [0, 0, 0, 0]]], jnp.float32)
LABELS = jnp.array([[3, 1, 0]])
VALID = jnp.array([[1, 1, 0]], jnp.float32)


def test_focal_loss_by_hand():
    logits = jnp.array([0.0, 2.0, -1.0])
    targets = jnp.array([1.0, 0.0, 1.0])
    p = 1 / (1 + np.exp(-np.array([0.0, 2.0, -1.0])))
    # FL = -alpha_t (1 - p_t)^gamma log(p_t); alpha_t = 0.25 for a positive, 0.75 for a negative.
    want = [
        -0.25 * (1 - 0.5) ** 2 * math.log(0.5),
        -0.75 * p[1] ** 2 * math.log(1 - p[1]),  # p_t = 1 - p, 1 - p_t = p
        -0.25 * (1 - p[2]) ** 2 * math.log(p[2]),
    ]
    np.testing.assert_allclose(rn.focal_loss(logits, targets, 2.0, 0.25), want, rtol=1e-6)


def test_focal_loss_gamma_0_is_the_cross_entropy():
    logits = jnp.array([[-3.0, 0.5, 4.0], [1.0, -2.0, 0.0]])
    targets = jnp.array([[0.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
    ce = optax.sigmoid_binary_cross_entropy(logits, targets)
    np.testing.assert_allclose(rn.focal_loss(logits, targets, 0.0, -1.0), ce, rtol=1e-6)
    # alpha 0.5 without focusing is half the cross-entropy.
    np.testing.assert_allclose(rn.focal_loss(logits, targets, 0.0, 0.5), 0.5 * ce, rtol=1e-6)


def test_anchor_targets_by_hand():
    # IoUs: anchor 0 with box 0: 1 (positive, class 3). Anchor 1 with box 1: overlap 14 x 16 = 224, union 512 - 224
    # = 288 -> 0.78 (positive, class 1). Anchor 2 with box 0: 256 / 1024 = 0.25 (< 0.4: background).
    t = rn.anchor_targets(ANCHORS, BOXES, LABELS, VALID, 5, 0.5, 0.4, low_quality=False)
    np.testing.assert_array_equal(t["positive"][0], [1, 1, 0])
    np.testing.assert_array_equal(t["counted"][0], [1, 1, 1])
    np.testing.assert_array_equal(np.argmax(t["classes"][0, :2], -1), [3, 1])
    np.testing.assert_array_equal(t["classes"][0, 2], np.zeros(5))  # background: all-zero targets
    # Box 1 relative to anchor 1: centre (8, 22) vs (8, 24), same size: (0, -2 / 16, 0, 0).
    np.testing.assert_allclose(t["deltas"][0], [[0, 0, 0, 0], [0, -0.125, 0, 0], [0, 0, 0, 0]], atol=1e-6)
    # Thresholds (0.8, 0.2): anchor 1 (0.78) and anchor 2 (0.25) fall in between and are ignored.
    t = rn.anchor_targets(ANCHORS, BOXES, LABELS, VALID, 5, 0.8, 0.2, low_quality=False)
    np.testing.assert_array_equal(t["positive"][0], [1, 0, 0])
    np.testing.assert_array_equal(t["counted"][0], [1, 0, 0])
    # With low-quality matches anchor 1 is box 1's best anchor: positive again.
    t = rn.anchor_targets(ANCHORS, BOXES, LABELS, VALID, 5, 0.8, 0.2, low_quality=True)
    np.testing.assert_array_equal(t["positive"][0], [1, 1, 0])


def _task(**options):
    task = object.__new__(rn.RetinaNetTask)  # the loss and decoding only read these settings
    task.num_classes, task.max_detections = 5, 10
    task.options = {**rn._DEFAULTS, **options}
    task.strides, task.anchor_sizes, task.aspect_ratios = (8, 16), ((16.0,), (32.0,)), (1.0,)
    return task


def _perfect_outputs(task, boxes, labels, valid):
    """Logits +-20 (positives of the gt class high) and deltas ``encode(gt, anchor)`` at the matched anchors."""
    anchors = task.anchors((32, 32))
    m = anchor_ops.match(anchors, boxes[0], valid[0], 0.5, 0.4, True)
    positive = np.asarray(m) >= 0
    gt = np.asarray(boxes[0])[np.maximum(m, 0)]
    hot = np.zeros((1, anchors.shape[0], task.num_classes), bool)
    hot[0, positive, np.asarray(labels[0])[np.maximum(m, 0)][positive]] = True
    deltas = jnp.where(positive[:, None], encode(gt, anchors), 0.0)[None]
    return {"class_logits": jnp.where(hot, 20.0, -20.0), "box_deltas": deltas}, int(positive.sum())


def test_perfect_outputs_decode_to_the_gt_boxes():
    task = _task()
    batch = {"image": jnp.zeros((1, 32, 32, 3)), "boxes": BOXES, "box_labels": LABELS, "box_mask": VALID}
    outputs, positives = _perfect_outputs(task, BOXES, LABELS, VALID)
    assert positives > 2  # several anchors per box: NMS has duplicates to remove
    det = jax.jit(task.predict)(outputs, batch)
    n = int(det["det_mask"][0].sum())
    assert n == 2  # every positive anchor of a box decodes to it; NMS keeps one per box
    order = np.argsort(np.asarray(det["det_classes"][0, :n]))
    np.testing.assert_allclose(det["det_boxes"][0, :n][order], BOXES[0, [1, 0]], atol=1e-4)
    np.testing.assert_array_equal(det["det_classes"][0, :n][order], [1, 3])
    np.testing.assert_array_equal(det["det_mask"][0, n:], 0)
    np.testing.assert_array_equal(det["det_boxes"][0, n:], 0)
    losses = task.losses(outputs, batch, SimpleNamespace())
    assert float(losses["box"]) == pytest.approx(0.0, abs=1e-6)
    assert float(losses["focal"]) < 1e-6


def test_ignored_anchors_contribute_nothing():
    task = _task(positive_iou=0.8, negative_iou=0.2, low_quality_matches=False)
    task.anchors = lambda shape: ANCHORS
    # IoU with anchor 0: 16 * 12 / 256 = 0.75 (ignored); anchor 1: 0; anchor 2: 192 / 1024 = 0.19 (negatives).
    boxes = jnp.array([[[0, 0, 16, 12]]], jnp.float32)
    labels, valid = jnp.array([[2]]), jnp.ones((1, 1))
    t = rn.anchor_targets(ANCHORS, boxes, labels, valid, 5, 0.8, 0.2, False)
    np.testing.assert_array_equal(t["counted"][0], [0, 1, 1])
    assert float(t["positive"].sum()) == 0
    batch = {"image": jnp.zeros((1, 32, 32, 3)), "boxes": boxes, "box_labels": labels, "box_mask": valid}
    base = {"class_logits": jnp.full((1, 3, 5), -5.0), "box_deltas": jnp.zeros((1, 3, 4))}
    moved = {"class_logits": base["class_logits"].at[0, 0].set(7.0), "box_deltas": base["box_deltas"].at[0, 0].set(3.0)}
    a, b = task.losses(base, batch, None), task.losses(moved, batch, None)
    assert float(a["focal"]) == float(b["focal"]) and float(a["box"]) == float(b["box"]) == 0.0
    # No positives: the 2 counted anchors' 5 classes, FL = -0.75 p^2 log(1 - p) each, divided by max(0, 1) = 1.
    p = 1 / (1 + math.exp(5.0))
    assert float(a["focal"]) == pytest.approx(2 * 5 * -0.75 * p**2 * math.log(1 - p), rel=1e-5)


@pytest.mark.parametrize("fpn", [True, False])
def test_model_outputs_one_row_per_anchor(fpn):
    model = models.get("_retinanet_tiny", num_classes=10, num_anchors=9 if fpn else 27, fpn=fpn)
    x = jnp.zeros((2, 96, 96, 3))
    out, _ = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x), x)
    sizes = [(16, 20, 25), (32, 40, 50), (64, 80, 101)]
    if not fpn:
        sizes = [tuple(s for level in sizes for s in level)]
    anchors = anchor_ops.multilevel_anchors(level_shapes((96, 96), model.strides), model.strides, sizes)
    assert model.strides == ((8, 16, 32) if fpn else (8,))
    assert anchors.shape[0] == ((12 * 12 + 6 * 6 + 3 * 3) * 9 if fpn else 12 * 12 * 27)
    assert out["class_logits"].shape == (2, anchors.shape[0], 10)
    assert out["box_deltas"].shape == (2, anchors.shape[0], 4)


def test_initial_scores_are_the_prior():
    model = models.get("_retinanet_tiny", num_classes=3, num_anchors=9)
    x = jax.random.normal(jax.random.key(1), (1, 32, 32, 3))
    out, _ = model.init_with_output(jax.random.key(0), x)
    np.testing.assert_allclose(jax.nn.sigmoid(out["class_logits"]), 0.01, atol=2e-3)


@pytest.mark.slow  # CI runs a detector (CenterNet) through the loop and launch.py in test_detection_launch.py
def test_runlocal_through_the_loop(tmp_path):
    """experiments/scenes_retinanet.py:runlocal trains, evaluates and summarises with the AP headline."""
    import json

    import mlcv
    from experiments import scenes_retinanet

    mlcv.run(scenes_retinanet.get_config("runlocal"), tmp_path)
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["task"] == "retinanet" and written["headline_metric"]["name"] == "ap"
    assert 0.0 <= written["test"]["ap"] <= 1.0


def test_resnet_backbone_with_the_papers_extra_levels():
    """A zoo ResNet gives C2..C5; P6 and P7 are strided convolutions above C5, as the paper builds them.

    On a 100x70 input, levels 3..7 (strides 8..128) have ceil(100 / s) x ceil(70 / s) cells:
    13 x 9 + 7 x 5 + 4 x 3 + 2 x 2 + 1 x 1 = 169, two anchors each.
    """
    from mlcv.models import resnet

    # Shapes only (jax.eval_shape): compiling the initialisers would cost half a minute of CPU.
    stages = resnet.ResNet(1, (1, 1, 1, 1), resnet.BasicBlock, widths=(8, 8, 8, 8), return_stages=True)
    x = jnp.zeros((1, 64, 64, 3))
    out = jax.eval_shape(lambda v: stages.apply(v, x), jax.eval_shape(stages.init, jax.random.key(0), x))
    assert {k: v.shape[1] for k, v in out.items()} == {2: 16, 3: 8, 4: 4, 5: 2}
    model = models.get("retinanet", num_classes=3, num_anchors=2, backbone="_resnet_tiny", max_level=7, head_convs=1)
    x = jnp.zeros((1, 100, 70, 3))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    assert jax.eval_shape(lambda v: model.apply(v, x), variables)["class_logits"].shape == (1, 338, 3)
    assert {"backbone", "extra6", "extra7"} <= set(variables["params"])
    with pytest.raises(ValueError, match="backbone 'vgg'"):
        jax.eval_shape(models.get("retinanet", num_classes=3, backbone="vgg").init, jax.random.key(0), x)

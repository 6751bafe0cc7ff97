"""Faster R-CNN: RPN targets, proposals, RoI sampling, second-stage targets, losses and decoding by hand."""

from __future__ import annotations

import json
import math
import subprocess

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from conftest import ROOT, launch_cmd

from mlcv import data, models, tasks
from mlcv.tasks import faster_rcnn as fr
from mlcv.training.steps import StepBuilder

# Side-16 anchors at (8, 8), (8, 24) and (48, 48), a side-32 one at (16, 16), one shifted by 4 px.
ANCHORS = jnp.array([[0, 0, 16, 16], [0, 16, 16, 32], [0, 0, 32, 32], [40, 40, 56, 56], [0, 4, 16, 20]], jnp.float32)
BOXES = jnp.array([[[0, 0, 16, 16], [0, 14, 16, 30], [0, 0, 0, 0]]], jnp.float32)
VALID = jnp.array([[1, 1, 0]], jnp.float32)
KEY = jax.random.key(0)


def test_rpn_targets_by_hand():
    # IoUs: anchor 0 with box 0: 1 (positive). Anchor 1 with box 1: 14 x 16 = 224 over 512 - 224 = 288, 0.78
    # (positive). Anchor 2: 256 / 1024 = 0.25 with either box, anchor 3: 0 (negatives, < 0.3). Anchor 4 with box 0:
    # 16 x 12 = 192 over 320, 0.6: between 0.3 and 0.7, and no box's best anchor: left out.
    t = fr.rpn_targets(ANCHORS, BOXES, VALID, KEY, num_samples=256)
    np.testing.assert_array_equal(t["labels"][0], [1, 1, 0, 0, -1])
    # Box 1 against anchor 1: centre (8, 22) vs (8, 24), same size: (0, -2 / 16, 0, 0); R-CNN weights 1.
    want = np.zeros((5, 4), np.float32)
    want[1] = [0, -0.125, 0, 0]
    np.testing.assert_allclose(t["deltas"][0], want, atol=1e-6)
    # Two samples, half positive: one of the 2 positives and one of the 2 negatives, never the ignored anchor.
    for seed in range(5):
        labels = np.asarray(fr.rpn_targets(ANCHORS, BOXES, VALID, jax.random.key(seed), num_samples=2)["labels"][0])
        assert (labels == 1).sum() == 1 and (labels == 0).sum() == 1 and labels[4] == -1
        assert set(np.flatnonzero(labels == 1)) <= {0, 1} and set(np.flatnonzero(labels == 0)) <= {2, 3}


def test_rpn_targets_keep_each_box_best_anchor():
    # A 16 x 8 box in anchor 3: IoU 128 / 256 = 0.5 < 0.7, but it is the box's best anchor: positive.
    boxes = jnp.array([[[40, 40, 56, 48]]], jnp.float32)
    t = fr.rpn_targets(ANCHORS, boxes, jnp.ones((1, 1)), KEY)
    np.testing.assert_array_equal(t["labels"][0], [0, 0, 0, 1, 0])
    # Same centre row, x centre 44 vs 48 over width 16, height equal, width log(8 / 16).
    np.testing.assert_allclose(t["deltas"][0, 3], [0, -0.25, 0, math.log(0.5)], atol=1e-6)


def test_propose_by_hand():
    logits = jnp.array([[5.0, 4.0, 3.0, 2.0, 1.0]])
    # Zero deltas: the proposals are the anchors. NMS at 0.5: anchor 4 overlaps anchor 0 by 0.6 and goes.
    boxes, mask = fr.propose(logits, jnp.zeros((1, 5, 4)), ANCHORS, (64, 64), 5, 5, 0.5)
    np.testing.assert_array_equal(mask[0], [1, 1, 1, 1, 0])
    np.testing.assert_array_equal(boxes[0, :4], ANCHORS[:4])
    np.testing.assert_array_equal(boxes[0, 4], 0)
    # At most 2 after NMS; or only the 2 best before it (the rest padding).
    boxes, mask = fr.propose(logits, jnp.zeros((1, 5, 4)), ANCHORS, (64, 64), 5, 2, 0.5)
    np.testing.assert_array_equal(boxes[0], ANCHORS[:2])
    boxes, mask = fr.propose(logits, jnp.zeros((1, 5, 4)), ANCHORS, (64, 64), 2, 4, 0.5)
    np.testing.assert_array_equal(mask[0], [1, 1, 0, 0])
    # Decoded, then clipped: t_y = 1 moves anchor 3 down by its height to (56, 40, 72, 56), clipped at 64 to a
    # side of 8; with min_size 10 it is dropped.
    deltas = jnp.zeros((1, 5, 4)).at[0, 3, 0].set(1.0)
    boxes, mask = fr.propose(logits, deltas, ANCHORS, (64, 64), 5, 5, 0.5)
    np.testing.assert_array_equal(boxes[0, 3], [56, 40, 64, 56])
    _, mask = fr.propose(logits, deltas, ANCHORS, (64, 64), 5, 5, 0.5, min_size=10.0)
    np.testing.assert_array_equal(mask[0], [1, 1, 1, 0, 0])


def test_second_stage_targets_by_hand():
    gt = jnp.array([[[2, 2, 22, 18], [0, 0, 0, 0]]], jnp.float32)
    labels, valid = jnp.array([[4, 0]]), jnp.array([[1.0, 0.0]])
    # Roi 0 with the box: overlap 18 x 16 = 288, union 400 + 320 - 288 = 432: IoU 2/3, foreground of class 4 + 1.
    # Roi 1: IoU 0, background. Roi 2: 320 / 900 = 0.36: background at 0.5, neither when background is < 0.3.
    rois = jnp.array([[[0, 0, 20, 20], [30, 30, 50, 50], [0, 0, 30, 30]]], jnp.float32)
    t = fr.roi_targets(rois, jnp.ones((1, 3)), gt, labels, valid, KEY, num_samples=8, positive_fraction=0.5)
    np.testing.assert_array_equal(t["sampled"][0], [1, 1, 1])
    np.testing.assert_array_equal(t["classes"][0], [5, 0, 0])
    # Weights (10, 10, 5, 5): centre (12, 10) vs (10, 10) over 20: t_y = 10 * 0.1; t_w = 5 log(16 / 20).
    np.testing.assert_allclose(t["deltas"][0, 0], [1.0, 0.0, 0.0, 5 * math.log(0.8)], atol=1e-5)
    np.testing.assert_array_equal(t["deltas"][0, 1:], 0)
    t = fr.roi_targets(rois, jnp.ones((1, 3)), gt, labels, valid, KEY, 8, 0.5, background_iou=0.3)
    np.testing.assert_array_equal(t["sampled"][0], [1, 1, 0])


@pytest.mark.parametrize("foreground, want_fg", [(10, 4), (2, 2)])
def test_roi_sampling_counts(foreground, want_fg):
    """16 RoIs at 25 % foreground: 4 foreground (or all there are) and background for the rest; padding never."""
    gt = jnp.array([[[10, 10, 30, 30]]], jnp.float32)
    fg = np.tile([[10, 10, 30, 30]], (foreground, 1))
    bg = np.tile([[60, 60, 80, 80]], (30, 1))
    padding = np.tile([[10, 10, 30, 30]], (5, 1))  # would be foreground, but the mask says padding
    rois = jnp.asarray(np.concatenate([fg, bg, padding])[None], jnp.float32)
    roi_valid = jnp.asarray(np.r_[np.ones(foreground + 30), np.zeros(5)][None])
    for seed in range(3):
        t = fr.roi_targets(rois, roi_valid, gt, jnp.array([[7]]), jnp.ones((1, 1)), jax.random.key(seed), 16, 0.25)
        sampled, classes = np.asarray(t["sampled"][0]), np.asarray(t["classes"][0])
        assert sampled[:foreground].sum() == want_fg and sampled[foreground:-5].sum() == 16 - want_fg
        assert not sampled[-5:].any()
        np.testing.assert_array_equal(classes[:foreground][sampled[:foreground]], 8)
        np.testing.assert_array_equal(classes[foreground:], 0)
    index, ok = fr.gather_sampled(t["sampled"], 20)
    assert int(ok.sum()) == 16 and set(np.asarray(index[0, :16])) == set(np.flatnonzero(sampled))


def _task(model=None, **detection):
    config = ml_collections.ConfigDict()
    config.task = "faster_rcnn"
    config.model = {"name": "_faster_rcnn_tiny", **(model or {})}
    pp = "keep('image', 'boxes', 'box_labels')|pad_boxes(8)|normalize"
    config.data = {"name": "digit_scenes", "pp_train": pp, "pp_eval": pp}
    config.detection = detection
    return tasks.get("faster_rcnn")(config, data.meta(data.get("digit_scenes")))


def test_losses_by_hand():
    task = _task()
    deltas = np.zeros((1, 3, 10, 4), np.float32)
    deltas[0, 0, 1] = [1, 0, 0, 0]  # class 2's deltas (row 1): roi 0's gt class
    deltas[0, 0, 0] = [9, 9, 9, 9]  # another class's deltas: not in the loss
    deltas[0, 2, 1] = [9, 9, 9, 9]  # roi 2 is not sampled
    outputs = {
        "rpn_logits": jnp.array([[0.0, 0.0, 7.0]]),
        "rpn_deltas": jnp.zeros((1, 3, 4)),
        "rpn_labels": jnp.array([[1, 0, -1]]),
        "rpn_targets": jnp.array([[[0.5, 0, 0, 0], [0, 0, 0, 0], [3, 3, 3, 3]]]),
        "class_logits": jnp.zeros((1, 3, 11)),
        "box_deltas": jnp.asarray(deltas),
        "roi_classes": jnp.array([[2.0, 0.0, 2.0]]),  # the step hands the outputs over as float32
        "roi_targets": jnp.zeros((1, 3, 4)),
        "roi_sampled": jnp.array([[1.0, 1.0, 0.0]]),
    }
    losses = task.losses(outputs, {}, None)
    # Two sampled anchors at logit 0: BCE log 2 each, over 2. The positive's t_y residual 0.5 >= beta = 1/9:
    # 0.5 - 0.5 / 9, over the 2 sampled anchors.
    assert float(losses["rpn_objectness"]) == pytest.approx(math.log(2), rel=1e-6)
    assert float(losses["rpn_box"]) == pytest.approx((0.5 - 0.5 / 9) / 2, rel=1e-6)
    # Two sampled RoIs, uniform over 11 classes: log 11. Roi 0's class-2 residual 1 at beta 1: 0.5, over 2.
    assert float(losses["roi_class"]) == pytest.approx(math.log(11), rel=1e-6)
    assert float(losses["roi_box"]) == pytest.approx(0.25, rel=1e-6)


def test_detect_by_hand():
    rois = jnp.array([[[10, 10, 30, 30], [10, 10, 30, 30], [10, 10, 30, 30], [50, 50, 70, 70]]], jnp.float32)
    logits = np.zeros((1, 4, 4), np.float32)
    logits[0, 0, 2] = 5.0  # roi 0: object class 2 (dataset class 1)
    logits[0, 1, 2] = 4.0  # roi 1: the same box and class, a lower score: suppressed
    logits[0, 2, 3] = 4.5  # roi 2: the same box as class 3: kept, NMS is class-aware
    logits[0, 3, 0] = 5.0  # roi 3: background; its object classes score 1 / (e^5 + 3) < 0.05
    deltas = np.zeros((1, 4, 3, 4), np.float32)
    # (t_y, t_x, t_h, t_w) / (10, 10, 5, 5) = (0.1, 0, 0, log 0.5): centre y 20 + 0.1 x 20, width 10.
    deltas[0, :2, 1] = [1.0, 0.0, 0.0, 5 * math.log(0.5)]
    det = fr.detect(jnp.asarray(logits), jnp.asarray(deltas), rois, jnp.ones((1, 4)), (64, 64), 5)
    p = lambda z: math.exp(z) / (math.exp(z) + 3)  # noqa: E731
    np.testing.assert_array_equal(det["det_mask"][0], [1, 1, 0, 0, 0])
    np.testing.assert_allclose(det["det_scores"][0, :2], [p(5.0), p(4.5)], rtol=1e-5)
    np.testing.assert_array_equal(det["det_classes"][0, :2], [1, 2])
    np.testing.assert_allclose(det["det_boxes"][0, :2], [[12, 15, 32, 25], [10, 10, 30, 30]], atol=1e-4)
    # A RoI marked padding gives nothing.
    det = fr.detect(jnp.asarray(logits), jnp.asarray(deltas), rois, jnp.array([[0, 0, 1, 1]]), (64, 64), 5)
    np.testing.assert_array_equal(det["det_classes"][0, :1], [2])
    assert float(det["det_mask"].sum()) == 1


def test_combine_pools_the_members_detections():
    task = _task()
    one = {
        "det_boxes": jnp.array([[[0, 0, 10, 10], [20, 20, 30, 30]]], jnp.float32),
        "det_scores": jnp.array([[0.9, 0.8]]),
        "det_classes": jnp.array([[0, 1]]),
        "det_mask": jnp.array([[1.0, 1.0]]),
        "loss": jnp.array([1.0]),
    }
    two = {
        "det_boxes": jnp.array([[[0, 0, 10, 9], [40, 40, 50, 50]]], jnp.float32),  # IoU 0.9 with one's first
        "det_scores": jnp.array([[0.7, 0.6]]),
        "det_classes": jnp.array([[0, 0]]),
        "det_mask": jnp.array([[1.0, 1.0]]),
        "loss": jnp.array([3.0]),
    }
    out = task.combine([one, two], {})
    np.testing.assert_allclose(out["det_scores"][0, :4], [0.9, 0.8, 0.6, 0.0])
    np.testing.assert_array_equal(out["det_classes"][0, :3], [0, 1, 0])
    np.testing.assert_array_equal(out["det_boxes"][0, 2], [40, 40, 50, 50])
    np.testing.assert_allclose(out["loss"], [2.0])


def test_model_shapes_and_pooling_levels():
    model = models.get("_faster_rcnn_tiny", num_classes=10, num_anchors=3)
    x = jnp.zeros((2, 96, 96, 3))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    out = jax.eval_shape(lambda v, x: model.apply(v, x, method="rpn"), variables, x)
    # P2..P5 of a 96x96 input: 24^2 + 12^2 + 6^2 + 3^2 = 765 locations, 3 anchors each.
    assert [p.shape for p in out["pyramid"]] == [(2, s, s, 8) for s in (24, 12, 6, 3)]
    assert out["rpn_logits"].shape == (2, 2295) and out["rpn_deltas"].shape == (2, 2295, 4)
    assert _task().anchors((96, 96)).shape == (2295, 4)
    rois = jnp.zeros((2, 5, 4))
    head = jax.eval_shape(lambda v, p: model.apply(v, p, rois, method="roi_head"), variables, out["pyramid"])
    assert head["class_logits"].shape == (2, 5, 11) and head["box_deltas"].shape == (2, 5, 10, 4)
    # Each RoI pools from its FPN level: floor(4 + log2(side / 56)). Level l's map is the constant l, so every bin
    # of the pooled features is l. 20 px -> 2 (clipped up from 2), 40 -> 3, 80 -> 4, 120 -> 5 (a 128 px image).
    pyramid = [jnp.full((1, 128 // 2**level, 128 // 2**level, 2), float(level)) for level in range(2, 6)]
    boxes = jnp.array([[[4, 4, 24, 24], [4, 4, 44, 44], [4, 4, 84, 84], [4, 4, 124, 124]]], jnp.float32)
    pooled = jax.jit(lambda p, b: model.apply({}, p, b, method="pool"))(pyramid, boxes)  # no parameters
    assert pooled.shape == (1, 4, 7, 7, 2)
    np.testing.assert_allclose(pooled[0], np.broadcast_to([2.0, 3.0, 4.0, 5.0], (7, 7, 2, 4)).T.swapaxes(1, 3))


def _batch(n=2, size=64):
    """Bright squares on a dark image, two digits' worth of boxes each."""
    image = np.full((n, size, size, 3), -1.0, np.float32)
    boxes = np.array([[[8, 8, 28, 24], [30, 34, 54, 58]]] * n, np.float32)
    for b in range(n):
        for y0, x0, y1, x1 in boxes[b].astype(int):
            image[b, y0:y1, x0:x1] = 1.0
    return {
        "image": jnp.asarray(image),
        "boxes": jnp.asarray(np.concatenate([boxes, np.zeros((n, 1, 4), np.float32)], 1)),
        "box_labels": jnp.array([[3, 5, 0]] * n),
        "box_mask": jnp.array([[1.0, 1.0, 0.0]] * n),
        "box_overflow": jnp.zeros((n,)),
    }


def _steps(dtype, averaging, steps):
    """``steps`` train steps on one repeated batch through the generic step's CPU path (forward, then backward)."""
    # Two levels (P2, P3 of three 8-channel stages) compile in half the time of the five stages.
    task = _task({"stage_features": (8, 8, 8), "max_level": 3}, anchor_sizes=(16.0, 32.0))
    config = ml_collections.ConfigDict({"dtype": dtype, "optim": {"name": "adam"}})
    config.averaging = {"kind": averaging, "ema_decay": 0.9, "ema_warmup": True}
    builder = StepBuilder(config, task)
    batch = _batch()
    state = builder.init(jax.random.key(0), batch, optax.adam(1e-2))
    fwd, bwd = jax.jit(builder.forward), jax.jit(builder.backward)
    history = []
    for _ in range(steps):
        state, metrics = bwd(state, batch, *fwd(state, batch))
        history.append(jax.device_get(metrics))
    return builder, state, batch, history


def test_train_steps_lower_the_loss():
    _, _, _, history = _steps("float32", "none", 12)
    losses = [float(m["loss"]) for m in history]
    assert all(np.isfinite(losses)) and np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses
    # The gt boxes join the RoIs: foreground RoIs from the first step; the RPN samples positives.
    assert history[0]["roi_foreground"] >= 2 and history[0]["rpn_positives"] >= 2


@pytest.mark.slow
def test_bfloat16_and_ema_steps_and_predict():
    """Mixed precision and parameter averaging wrap the two-stage apply: finite losses, then predictions."""
    builder, state, batch, history = _steps("bfloat16", "ema", 4)
    assert all(np.isfinite(float(m["loss"])) for m in history)
    assert jax.tree.leaves(state.avg)
    preds = jax.jit(builder.predict)({"params": state.params, "batch_stats": state.batch_stats}, batch)
    assert preds["det_boxes"].shape == (2, 100, 4) and preds["loss"].shape == (2,)
    assert np.isfinite(preds["loss"]).all()


@pytest.mark.slow
def test_runlocal_through_launch(tmp_path):
    """experiments/scenes_faster_rcnn.py:runlocal trains, evaluates and writes the summary with a test AP."""
    config = str(ROOT / "experiments" / "scenes_faster_rcnn.py") + ":runlocal"
    cmd = launch_cmd("--config", config, "--workdir", str(tmp_path / "run"))
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["task"] == "faster_rcnn" and summary["headline_metric"]["name"] == "ap"
    assert 0.0 <= summary["test"]["ap"] <= 1.0


def test_resnet_backbone_with_the_fpn_papers_p6():
    """A zoo ResNet gives C2..C5; P6 subsamples P5 by 2 for the RPN only, RoIs pool from P2..P5 (FPN §4.1).

    On a 64x96 input, levels 2..6 (strides 4..64) have 16x24, 8x12, 4x6, 2x3 and 1x2 cells: 512 locations.
    """
    from mlcv import models as zoo

    model = zoo.get(
        "faster_rcnn", num_classes=3, num_anchors=1, backbone="_resnet_tiny", max_level=6, roi_max_level=5,
        fpn_features=8, head_features=16,
    )  # fmt: skip
    x = jnp.zeros((1, 64, 96, 3))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    out = jax.eval_shape(lambda v: model.apply(v, x), variables)
    assert out["rpn_logits"].shape == (1, 512)
    assert "resnet" in variables["params"]["features"]
    assert out["class_logits"].shape == (1, 1, 4)

"""Mask R-CNN: mask targets and pasting against OpenCV, the mask loss by hand, the model, the task's checks."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess

import cv2
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from conftest import ROOT, launch_cmd

from mlcv import data, models, tasks
from mlcv.config import ConfigError
from mlcv.ops.masks import crop_masks, paste_masks
from mlcv.tasks.mask_rcnn import mask_loss


def _random_mask(seed: int = 0) -> np.ndarray:
    """Two 64x64 instance masks, the second a random pattern over most of the image (the first empty)."""
    masks = np.zeros((2, 64, 64), bool)
    masks[1, 5:60, 3:50] = np.random.default_rng(seed).random((55, 47)) > 0.5
    return masks


@pytest.mark.parametrize(
    "box, expected",
    [
        # A 28 px box: each cell is one pixel, the crop itself.
        ((10, 12, 38, 40), lambda m: m[10:38, 12:40]),
        # A 56 px box: each cell the mean of a 2x2 block (OpenCV's INTER_AREA at factor 2), in at >= 0.5 (2 of 4).
        ((4, 6, 60, 62), lambda m: cv2.resize(m[4:60, 6:62], (28, 28), interpolation=cv2.INTER_AREA)),
        # A 14 px box: the bilinear doubling with half-pixel centres (INTER_LINEAR), the box's neighbouring pixels
        # included at its border: resize the crop grown by 1 px to 32, then drop the 2 outer rows and columns.
        ((20, 22, 34, 36), lambda m: cv2.resize(m[19:35, 21:37], (32, 32), interpolation=cv2.INTER_LINEAR)[2:-2, 2:-2]),
    ],
)
def test_mask_target_against_opencv(box, expected):
    """The target of an RoI is its matched gt mask (row 1, not row 0) cut at the box to 28x28, >= 0.5."""
    masks = _random_mask()
    target = crop_masks(jnp.asarray(masks[None]), jnp.array([[box]], jnp.float32), jnp.array([[1]]), 28)
    want = (expected(masks[1].astype(np.float32)) >= 0.5).astype(np.float32)
    assert target.shape == (1, 1, 28, 28)
    np.testing.assert_array_equal(target[0, 0], want)


def test_mask_target_of_a_hand_made_case():
    """A 28x28 RoI on a 2x2-upscaled 14x14 checkerboard: the target is the checkerboard's 2x2 blocks."""
    board = (np.indices((14, 14)).sum(0) % 2).astype(bool)
    masks = np.zeros((1, 1, 40, 40), bool)
    masks[0, 0, 6:34, 6:34] = np.kron(board, np.ones((2, 2), bool))
    target = crop_masks(jnp.asarray(masks), jnp.array([[[6, 6, 34, 34]]], jnp.float32), jnp.zeros((1, 1), int))
    np.testing.assert_array_equal(target[0, 0], np.kron(board, np.ones((2, 2))))


def test_paste_equals_opencv_resize_into_the_box():
    """Each 28x28 map resized into its (whole-pixel) box is cv2.resize(INTER_LINEAR) there, 0 elsewhere."""
    probs = np.random.default_rng(1).random((1, 3, 28, 28)).astype(np.float32)
    boxes = np.array([[[10, 20, 30, 56], [3, 4, 12, 13], [0, 0, 64, 80]]], np.float32)  # up- and downscaled
    out = np.asarray(paste_masks(jnp.asarray(probs), jnp.asarray(boxes), (64, 80)))
    assert out.shape == (1, 3, 64, 80)
    for k, (y0, x0, y1, x1) in enumerate(boxes[0].astype(int)):
        want = np.zeros((64, 80), np.float32)
        want[y0:y1, x0:x1] = cv2.resize(probs[0, k], (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_allclose(out[0, k], want, atol=1e-5)


def _loss_inputs():
    """Two RoIs of classes 3 (channel 2) and 0 (a negative) over 4 classes, 2x2 masks."""
    logits = np.zeros((1, 2, 2, 2, 4), np.float32)
    logits[0, 0, :, :, 2] = [[2.0, 2.0], [0.0, 0.0]]
    targets = np.array([[[[1, 1], [0, 0]], [[1, 0], [1, 0]]]], np.float32)
    return logits, targets, np.array([[3, 0]])


def test_mask_loss_by_hand():
    """Sigmoid BCE on the gt channel: target 1 at logit 2 costs log(1 + e^-2), target 0 at logit 0 log 2; mean."""
    logits, targets, classes = _loss_inputs()
    total, count = mask_loss(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(classes))
    assert float(count[0]) == 1.0
    assert float(total[0]) == pytest.approx(0.5 * math.log1p(math.exp(-2.0)) + 0.5 * math.log(2.0), rel=1e-6)


def test_mask_loss_reads_only_the_gt_class_channel_of_positive_rois():
    logits, targets, classes = _loss_inputs()
    before = mask_loss(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(classes))
    other = logits.copy()
    other[0, 0, :, :, [0, 1, 3]] = 9.0  # the positive RoI's other classes
    other[0, 1] = -7.0  # every channel of the negative RoI
    after = mask_loss(jnp.asarray(other), jnp.asarray(targets), jnp.asarray(classes))
    np.testing.assert_array_equal(np.asarray(after), np.asarray(before))
    moved = logits.copy()
    moved[0, 0, 0, 0, 2] = -3.0  # the gt channel does move it
    assert float(mask_loss(jnp.asarray(moved), jnp.asarray(targets), jnp.asarray(classes))[0][0]) > float(before[0][0])


def test_model_shapes_and_the_mask_pooling_levels():
    model = models.get("_mask_rcnn_tiny", num_classes=10, num_anchors=3)
    x = jnp.zeros((2, 96, 96, 3))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    head = variables["params"]["mask_head"]
    assert sorted(head) == ["conv1", "conv2", "conv3", "conv4", "deconv", "logits"]
    assert head["deconv"]["kernel"].shape == (2, 2, 8, 8) and head["logits"]["kernel"].shape == (1, 1, 8, 10)
    out = jax.eval_shape(model.apply, variables, x)
    assert out["mask_logits"].shape == (2, 1, 28, 28, 10) and out["class_logits"].shape == (2, 1, 11)
    pyramid = [jnp.zeros((2, 96 // 2**level, 96 // 2**level, 8)) for level in range(2, 6)]
    boxes = jnp.zeros((2, 5, 4))
    logits = jax.eval_shape(lambda v, p: model.apply(v, p, boxes, method="mask_logits"), variables, pyramid)
    assert logits.shape == (2, 5, 28, 28, 10) and logits.dtype == jnp.float32
    # The box head's FPN level for each box (level l's map is the constant l), pooled 14x14 for the masks.
    pyramid = [jnp.full((1, 128 // 2**level, 128 // 2**level, 2), float(level)) for level in range(2, 6)]
    boxes = jnp.array([[[4, 4, 24, 24], [4, 4, 44, 44], [4, 4, 84, 84], [4, 4, 124, 124]]], jnp.float32)
    pooled = model.apply({}, pyramid, boxes, 14, method="pool")
    assert pooled.shape == (1, 4, 14, 14, 2)
    np.testing.assert_allclose(pooled[0, :, 7, 7, 0], [2.0, 3.0, 4.0, 5.0])


def _config(**changes) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.task = "mask_rcnn"
    # Two levels (P2, P3 of three 8-channel stages) compile in half the time of the five stages.
    config.model = {"name": "_mask_rcnn_tiny", "stage_features": (8, 8, 8), "max_level": 3}
    pp = "keep('image', 'boxes', 'box_labels', 'masks')|pad_boxes(3)|normalize"
    config.data = {"name": "digit_scenes", "pp_train": pp, "pp_eval": pp}
    config.detection = {"anchor_sizes": (16.0, 32.0), "roi_batch_size": 16, "max_detections": 5}
    for key, value in changes.items():
        section, name = key.split(".")
        config[section][name] = value
    return config


def _meta(**features):
    meta = data.meta(data.get("digit_scenes"))
    merged = {k: v for k, v in {**meta.features, **features}.items() if v is not None}
    return dataclasses.replace(meta, features=merged)


def _batch(n: int = 2, size: int = 64) -> dict[str, jax.Array]:
    """Two bright squares an image, their masks the squares' upper halves (not the boxes)."""
    image = np.full((n, size, size, 3), -1.0, np.float32)
    boxes = np.array([[8, 8, 28, 24], [30, 34, 54, 58], [0, 0, 0, 0]], np.float32)
    masks = np.zeros((n, 3, size, size), bool)
    for b in range(n):
        for i, (y0, x0, y1, x1) in enumerate(boxes[:2].astype(int)):
            image[b, y0:y1, x0:x1] = 1.0
            masks[b, i, y0 : (y0 + y1) // 2, x0:x1] = True
    return {
        "image": jnp.asarray(image),
        "boxes": jnp.asarray(np.broadcast_to(boxes, (n, 3, 4))),
        "box_labels": jnp.array([[3, 5, 0]] * n),
        "box_mask": jnp.array([[1.0, 1.0, 0.0]] * n),
        "box_overflow": jnp.zeros((n,)),
        "masks": jnp.asarray(masks),
    }


def test_gradient_reaches_the_mask_head_and_predictions_have_masks():
    task = tasks.get("mask_rcnn")(_config(), _meta())
    assert "masks" in task.batch_keys and set(task.default_evaluators()) >= {"detection", "mask_detection"}
    batch = _batch()
    variables = task.init_variables(jax.random.key(0), batch)

    def loss_of(params):
        outputs, _ = task.apply(
            {**variables, "params": params}, batch, train=True, rngs={"dropout": jax.random.key(1)},
            mutable=["batch_stats"],
        )  # fmt: skip
        terms = task.losses(outputs, batch, None)
        return sum(terms.values()), (terms, outputs)

    grads, (terms, outputs) = jax.jit(jax.grad(loss_of, has_aux=True))(variables["params"])
    # The gt boxes join the RoIs: both objects of both images have foreground RoIs and mask targets.
    assert outputs["mask_logits"].shape == (2, 4, 28, 28, 10) and int((outputs["mask_classes"] > 0).sum()) >= 4
    assert np.isfinite(float(terms["roi_mask"])) and float(terms["roi_mask"]) > 0.1
    for name, g in grads["mask_head"].items():
        assert float(jnp.abs(g["kernel"]).sum()) > 0, name

    preds = jax.jit(lambda v, b: task.predict(task.apply(v, b, train=False), b))(variables, batch)
    assert preds["det_masks"].shape == (2, 5, 64, 64) and preds["loss"].shape == (2,)
    masks, boxes, real = (np.asarray(preds[k]) for k in ("det_masks", "det_boxes", "det_mask"))
    assert 0.0 <= masks.min() and masks.max() <= 1.0 and np.isfinite(preds["loss"]).all()
    rows, cols = np.indices((64, 64)) + 0.5
    for b, k in np.ndindex(real.shape):
        y0, x0, y1, x1 = boxes[b, k]
        outside = (rows < y0) | (rows >= y1) | (cols < x0) | (cols >= x1)
        assert not masks[b, k][outside | (real[b, k] == 0)].any()
    combined = task.combine([preds, preds], batch)
    np.testing.assert_allclose(combined["det_masks"], preds["det_masks"])


@pytest.mark.parametrize(
    "meta, config, match",
    [
        (dict(masks=None), {}, "has no 'masks' feature"),
        (dict(masks=data.Feature("masks", (None, 48, 48), "bool")), {}, r"\(None, 48, 48\).*\(96, 96, 3\)"),
        ({}, {"data.pp_eval": "keep('image', 'boxes', 'box_labels')|pad_boxes(3)|normalize"}, "drops 'masks'"),
        ({}, {"model.name": "_faster_rcnn_tiny"}, "has no mask head"),
        ({}, {"detection.mask_weight": -1.0}, "mask_weight"),
    ],
)
def test_bad_configs_raise_clear_errors(meta, config, match):
    with pytest.raises(ConfigError, match=match):
        tasks.get("mask_rcnn")(_config(**config), _meta(**meta))


def test_masks_of_another_size_than_the_image_raise():
    task = tasks.get("mask_rcnn")(_config(), _meta())
    batch = _batch()
    batch["masks"] = batch["masks"][:, :, :32, :32]
    variables = task.init_variables(jax.random.key(0), batch)
    with pytest.raises(ValueError, match=r"\(2, 3, 32, 32\).*\(2, 64, 64, 3\)"):
        jax.eval_shape(lambda v: task.apply(v, batch, train=False), variables)


@pytest.mark.slow
def test_runlocal_through_launch(tmp_path):
    """experiments/scenes_mask_rcnn.py:runlocal trains, evaluates and writes box and mask AP on test."""
    config = str(ROOT / "experiments" / "scenes_mask_rcnn.py") + ":runlocal"
    cmd = launch_cmd("--config", config, "--workdir", str(tmp_path / "run"))
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["task"] == "mask_rcnn" and summary["headline_metric"]["name"] == "mask_ap"
    assert 0.0 <= summary["test"]["ap"] <= 1.0 and 0.0 <= summary["test"]["mask_ap"] <= 1.0

"""R-CNN and Fast R-CNN: region labels, sampling, context and warp, RoIPool path, loss and decoding by hand."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from mlcv import data, models
from mlcv.config import ConfigError
from mlcv.models.fast_rcnn import FastRCNN, roi_pool_layer
from mlcv.models.rcnn import RCNN, BoxHead, ConvStages, context_boxes, default_context, warp_regions
from mlcv.ops.roi import roi_pool
from mlcv.tasks import rcnn as rc
from mlcv.tasks.detection import DETECTION_KEYS

GT = jnp.array([[0, 0, 20, 20], [40, 40, 60, 80], [0, 0, 0, 0]], jnp.float32)
GT_LABELS = jnp.array([3, 7, 0])
GT_MASK = jnp.array([1, 1, 0], jnp.float32)
# RBG keys: XLA compiles threefry's random bits for seconds per initialiser on a shared 2-core CPU, RBG's at once.
KEY = jax.random.key(0, impl="rbg")
PP = "keep('image', 'boxes', 'box_labels')|pad_boxes(8)|selective_search(16)|normalize"


def test_label_rois_by_hand():
    rois = jnp.array(
        [
            [0, 0, 20, 20],  # IoU 1 with gt 0: class 3 -> label 4
            [0, 0, 20, 30],  # gt 0: 400 / 600 = 0.67 -> label 4
            [40, 40, 60, 60],  # gt 1: 400 / 800 = 0.5 exactly -> label 8 (the threshold is inclusive)
            [0, 0, 40, 40],  # gt 0: 400 / 1600 = 0.25 -> background
            [0, 0, 100, 100],  # gt 0: 0.04, gt 1: 800 / 10000 = 0.08 -> below 0.1: not trained
            [0, 0, 20, 20],  # a padding row (invalid) even though it is a gt box
        ],
        jnp.float32,
    )
    valid = jnp.array([1, 1, 1, 1, 1, 0])
    labels, targets = rc.label_rois(rois, valid, GT, GT_LABELS, GT_MASK, 0.5, 0.1, (10, 10, 5, 5))
    np.testing.assert_array_equal(labels, [4, 4, 8, 0, -1, -1])
    # Roi 1 against gt 0: centres (10, 15) and (10, 10), sizes 20 x 30 and 20 x 20:
    # t = (10 * 0 / 20, 10 * (10 - 15) / 30, 5 * log(20 / 20), 5 * log(20 / 30)).
    np.testing.assert_allclose(targets[1], [0, -50 / 30, 0, 5 * math.log(2 / 3)], rtol=1e-6, atol=1e-6)
    # Roi 2 against gt 1: centres (50, 50) and (50, 60), widths 20 and 40: (0, 10 * 10 / 20, 0, 5 log 2).
    np.testing.assert_allclose(targets[2], [0, 5, 0, 5 * math.log(2)], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(targets)[[0, 3, 4, 5]], 0)
    # R-CNN's fine-tuning: everything under 0.5 is background.
    labels, _ = rc.label_rois(rois, valid, GT, GT_LABELS, GT_MASK, 0.5, 0.0)
    np.testing.assert_array_equal(labels, [4, 4, 8, 0, 0, -1])
    # An image without objects: background at a lower bound of 0, nothing trained at 0.1.
    no_gt = jnp.zeros(3)
    np.testing.assert_array_equal(rc.label_rois(rois, valid, GT, GT_LABELS, no_gt, 0.5, 0.0)[0], [0] * 5 + [-1])
    np.testing.assert_array_equal(rc.label_rois(rois, valid, GT, GT_LABELS, no_gt, 0.5, 0.1)[0], [-1] * 6)


@pytest.mark.parametrize("fg,bg,ignored,want_fg,want_bg", [(10, 100, 20, 8, 24), (3, 100, 0, 3, 29), (3, 5, 9, 3, 5)])
def test_sample_rois_counts(fg, bg, ignored, want_fg, want_bg):
    # 32 regions, at most int(32 * 0.25) = 8 foreground, background fills the rest when there is enough.
    labels = np.array([2] * fg + [0] * bg + [-1] * ignored)
    labels = jnp.asarray(np.random.default_rng(0).permutation(labels))
    index, taken = rc.sample_rois(jax.random.key(1, impl="rbg"), labels, 32, 0.25)
    picked = np.asarray(index)[np.asarray(taken)]
    assert len(set(picked.tolist())) == len(picked)  # without replacement
    assert (np.asarray(labels)[picked] > 0).sum() == want_fg
    assert (np.asarray(labels)[picked] == 0).sum() == want_bg
    assert taken.sum() == want_fg + want_bg and not np.asarray(taken)[want_fg + want_bg :].any()
    again, _ = rc.sample_rois(jax.random.key(1, impl="rbg"), labels, 32, 0.25)
    np.testing.assert_array_equal(index, again)  # the same key, the same regions


def test_context_boxes_by_hand():
    # A 40 x 20 box warped to 32 with p = 4: the box fills 24 px, so each side grows by 4/24 of its extent.
    got = context_boxes(jnp.array([10.0, 20.0, 50.0, 40.0]), 32, 4.0)
    np.testing.assert_allclose(got, [10 - 40 / 6, 20 - 20 / 6, 50 + 40 / 6, 40 + 20 / 6], rtol=1e-6)
    # The paper: p = 16 in a 227 warp; a 195 px box then grows by exactly 16 px a side.
    assert default_context(227) == 16.0
    np.testing.assert_allclose(context_boxes(jnp.array([0.0, 0.0, 195.0, 195.0]), 227, 16.0), [-16, -16, 211, 211])
    with pytest.raises(ValueError, match="leaves nothing"):
        context_boxes(jnp.zeros(4), 32, 16.0)


def _ramp(h: int, w: int) -> jax.Array:
    """f(row, col) = 10 row + col, in two channels (the second negated)."""
    f = 10.0 * np.arange(h)[:, None] + np.arange(w)[None, :]
    return jnp.asarray(np.stack([f, -f], axis=-1), jnp.float32)


def test_warp_by_hand():
    image = _ramp(8, 8)
    # A tall box 8 x 4 warped to 4 x 4 (anisotropic): output pixel (i, j) samples the image at the point
    # (i + 0.5) * 2 down and (j + 0.5) * 1 across, i.e. pixel coordinates 2i + 0.5 and j (centres at k + 0.5):
    # f = 10 (2i + 0.5) + j.
    got = warp_regions(image, jnp.array([[0.0, 0.0, 8.0, 4.0]]), 4)[0]
    i, j = np.meshgrid(np.arange(4), np.arange(4), indexing="ij")
    np.testing.assert_allclose(got[..., 0], 10 * (2 * i + 0.5) + j, rtol=1e-6)
    np.testing.assert_allclose(got[..., 1], -(10 * (2 * i + 0.5) + j), rtol=1e-6)
    # Context then warp: box (2, 2, 6, 6) with p = 2 in an 8 px warp grows by 2 a side, to the whole image, and
    # the warp is then the image itself, the box its central 4 x 4.
    grown = context_boxes(jnp.array([[2.0, 2.0, 6.0, 6.0]]), 8, 2.0)
    np.testing.assert_allclose(grown, [[0, 0, 8, 8]])
    np.testing.assert_allclose(warp_regions(image, grown, 8)[0], image, atol=1e-5)


def _variables(model, x, rois):
    return jax.jit(model.init)(KEY, x, rois)


def test_rcnn_runs_the_cnn_on_each_warped_region():
    model = models.get("_rcnn_tiny", num_classes=3)
    x = jax.random.normal(jax.random.key(1, impl="rbg"), (2, 40, 40, 3))
    rois = jnp.array([[[8, 8, 20, 24], [0, 0, 40, 40]], [[5, 10, 30, 20], [12, 3, 16, 39]]], jnp.float32)
    v = _variables(model, x, rois)
    apply = jax.jit(model.apply)
    out = apply(v, x, rois)
    assert out["class_logits"].shape == (2, 2, 4) and out["box_deltas"].shape == (2, 2, 3, 4)
    sub = lambda name: {k: v[k][name] for k in v if name in v[k]}  # noqa: E731

    @jax.jit
    def by_hand(image, boxes):
        # Context (p = 16 * 16 / 227 px of a 16 px warp), warp, the CNN and the head, for one image's regions.
        crops = warp_regions(image, context_boxes(boxes, 16, 16 * 16 / 227), 16)
        f = ConvStages((4, 8), 1, True).apply(sub("cnn"), crops, False)
        return BoxHead(3, (16,)).apply(sub("head"), f, False)

    for b in range(2):
        logits, deltas = by_hand(x[b], rois[b])
        np.testing.assert_allclose(out["class_logits"][b], logits, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out["box_deltas"][b], deltas, rtol=1e-5, atol=1e-6)
    # A region sees only its warp: the same pixels elsewhere in the image give the same outputs.
    shifted = jnp.roll(x, (5, 3), axis=(1, 2))
    moved = rois + jnp.array([5.0, 3.0, 5.0, 3.0])
    got = apply(v, shifted, moved)["class_logits"][0, 0]
    np.testing.assert_allclose(got, out["class_logits"][0, 0], rtol=1e-5, atol=1e-6)


def test_fast_rcnn_pools_one_feature_map():
    model = FastRCNN(num_classes=3, features=(4, 8, 16), convs_per_stage=1, pool_size=4, hidden=(16,))
    assert model.stride == 4  # two max pools; RoIPool replaces the third
    x = jax.random.normal(jax.random.key(1, impl="rbg"), (2, 96, 96, 3))
    rois = jnp.array([[[8, 8, 40, 24], [0, 0, 96, 96], [50, 60, 70, 90]]] * 2, jnp.float32)
    v = _variables(model, x, rois)
    out, state = jax.jit(lambda v, x, r: model.apply(v, x, r, capture_intermediates=True))(v, x, rois)
    fmap = state["intermediates"]["cnn"]["__call__"][0]
    assert fmap.shape == (2, 24, 24, 16)  # the CNN ran once per image, at stride 4
    sub = lambda name: {k: v[k][name] for k in v if name in v[k]}  # noqa: E731

    @jax.jit
    def by_hand(features, boxes):
        pooled = roi_pool(features, boxes, (4, 4), 1 / 4)
        return pooled, BoxHead(3, (16,)).apply(sub("head"), pooled, False)

    for b in range(2):
        pooled, (logits, deltas) = by_hand(fmap[b], rois[b])
        assert pooled.shape == (3, 4, 4, 16)
        np.testing.assert_allclose(out["class_logits"][b], logits, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out["box_deltas"][b], deltas, rtol=1e-5, atol=1e-6)


def test_roi_pool_layer_backward_goes_to_each_bins_maximum():
    # Without ties the paper's backward (the gradient to each bin's argmax) is JAX's derivative of roi_pool.
    features = jax.random.normal(jax.random.key(2, impl="rbg"), (6, 7, 3))
    rois = jnp.array([[0, 0, 24, 28], [4, 8, 13, 27], [20, 0, 24, 4], [9, 9, 10, 10]], jnp.float32)
    cot = jax.random.normal(jax.random.key(3, impl="rbg"), (4, 2, 3, 3))
    layer = jax.jit(lambda f: jax.vjp(lambda f: roi_pool_layer(f, rois, (2, 3), 0.25), f))
    ref = jax.jit(lambda f: jax.vjp(lambda f: roi_pool(f, rois, (2, 3), 0.25), f))
    (out, vjp), (want, vjp_ref) = layer(features), ref(features)
    np.testing.assert_array_equal(out, want)
    np.testing.assert_allclose(vjp(cot)[0], vjp_ref(cot)[0], rtol=1e-6, atol=1e-6)
    # By hand on ties: a constant 2x2 map, one region, one bin: Caffe's strict > keeps the first cell (0, 0).
    grad = jax.vjp(lambda f: roi_pool_layer(f, jnp.array([[0.0, 0.0, 2.0, 2.0]]), (1, 1), 1.0), jnp.ones((2, 2, 1)))[1]
    np.testing.assert_array_equal(grad(jnp.full((1, 1, 1, 1), 5.0))[0][..., 0], [[5, 0], [0, 0]])


def test_detect_by_hand():
    rois = jnp.array([[[10, 10, 30, 30], [50, 50, 70, 90], [11, 10, 31, 30], [0, 0, 50, 50]]], jnp.float32)
    valid = jnp.array([[1, 1, 1, 0]])
    probs = jnp.array([[[0.1, 0.8, 0.1], [0.02, 0.03, 0.95], [0.2, 0.7, 0.1], [0.0, 0.0, 1.0]]])
    deltas = np.zeros((1, 4, 2, 4), np.float32)
    deltas[0, 0, 0] = [0.1, 0, math.log(2), 0]  # centre y 20 + 20 * 0.1 = 22, height 40: (2, 10, 42, 30)
    deltas[0, 1, 1] = [0, 0.25, 0, math.log(0.5)]  # centre x 70 + 40 * 0.25 = 80, width 20: (50, 70, 70, 90)
    deltas[0, 2, 0] = [0.1, 0, math.log(2), 0]  # roi 2's class 0: (3, 10, 43, 30), IoU 0.95 with roi 0's
    detect = jax.jit(rc.detect, static_argnums=(4, 5, 6, 7, 8))
    det = detect(probs, jnp.asarray(deltas), rois, valid, (96, 96), 5, 0.5, 0.05, 100)
    # Class 0 of roi 2 (0.7) is suppressed by roi 0's (0.8); class 0 of roi 1 (0.03) is under the threshold;
    # class 1 of roi 2 (0.1) overlaps class 1 of roi 0 (also 0.1, lower index first) by 380 / 420: suppressed; the
    # invalid roi 3 (1.0) is never a candidate.
    np.testing.assert_allclose(det["det_scores"][0], [0.95, 0.8, 0.1, 0, 0], rtol=1e-6)
    np.testing.assert_array_equal(det["det_classes"][0], [1, 0, 1, 0, 0])
    np.testing.assert_allclose(det["det_boxes"][0, :3], [[50, 70, 70, 90], [2, 10, 42, 30], [10, 10, 30, 30]], 1e-5)
    np.testing.assert_array_equal(det["det_mask"][0], [1, 1, 1, 0, 0])
    # Decoded boxes are clipped to the image: a 60 px wide image cuts roi 1's class 1 box at x = 60.
    det = detect(probs, jnp.asarray(deltas), rois, valid, (96, 60), 5, 0.5, 0.05, 100)
    np.testing.assert_allclose(det["det_boxes"][0, 0], [50, 60, 70, 60], atol=1e-5)


def _config(task="fast_rcnn", model="_fast_rcnn_tiny", **detection):
    config = ml_collections.ConfigDict()
    config.task = task
    config.model = {"name": model}
    config.data = {"name": "digit_scenes", "pp_train": PP, "pp_eval": PP}
    config.detection = {"rois_per_image": 8, "box_weights": (1.0, 1.0, 1.0, 1.0), **detection}
    return config


def _task(**kwargs):
    from mlcv import tasks

    config = _config(**kwargs)
    return tasks.get(config.task)(config, data.meta(data.get("digit_scenes")))


def test_losses_by_hand():
    task = _task()
    labels = jnp.array([[2, 0, -1]])
    deltas = np.zeros((1, 3, 10, 4), np.float32)
    deltas[0, 0, 1] = [0.5, -2, 0, 0]  # the deltas of class 2 - 1 = 1, gt class of roi 0
    deltas[0, 0, 0] = [9, 9, 9, 9]  # another class's deltas: not in the loss
    outputs = {
        "class_logits": jnp.zeros((1, 3, 11)),
        "box_deltas": jnp.asarray(deltas),
        "roi_labels": labels,
        "roi_targets": jnp.zeros((1, 3, 4)),
        "roi_weights": jnp.array([[1.0, 1.0, 0.0]]),
    }
    losses = task.losses(outputs, {}, None)
    # Uniform logits over 11 classes: CE log 11 for each of the 2 weighted regions, over 2 regions.
    assert float(losses["class"]) == pytest.approx(math.log(11), rel=1e-6)
    # Smooth L1 (beta 1): 0.5 * 0.5^2 + (2 - 0.5) = 1.625 for the one foreground region, over 2 regions.
    assert float(losses["box"]) == pytest.approx(1.625 / 2, rel=1e-6)


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one box with each of ``others``, in NumPy."""
    ih = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    iw = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return ih * iw / (area(box) + area(others) - ih * iw)


def _scene_batch(rng: np.random.Generator, n: int = 2, size: int = 32):
    """Bright squares of 2 classes (intensity = class) on noise, proposals = jittered gt + random boxes."""
    images = rng.normal(0, 0.1, (n, size, size, 3)).astype(np.float32)
    boxes = np.zeros((n, 3, 4), np.float32)
    labels, mask = np.zeros((n, 3), np.int32), np.zeros((n, 3), np.float32)
    proposals = rng.uniform(0, size / 2, (n, 12, 2))
    proposals = np.concatenate([proposals, proposals + rng.uniform(4, size / 2, (n, 12, 2))], -1).astype(np.float32)
    for b in range(n):
        for k, (y, x) in enumerate([(2, 2), (16, 18)]):
            c = (b + k) % 2
            boxes[b, k], labels[b, k], mask[b, k] = [y, x, y + 12, x + 10], c, 1
            images[b, y : y + 12, x : x + 10] += 1.0 + c
            proposals[b, 4 * k : 4 * k + 4] = boxes[b, k] + rng.uniform(-2, 2, (4, 4))
    proposal_mask = np.ones((n, 12), np.float32)
    proposal_mask[:, -2:] = 0
    batch = {"image": images, "boxes": boxes, "box_labels": labels, "box_mask": mask}
    return {k: jnp.asarray(v) for k, v in {**batch, "proposals": proposals, "proposal_mask": proposal_mask}.items()}


@pytest.mark.parametrize("task_name,model", [("rcnn", "_rcnn_tiny"), ("fast_rcnn", "_fast_rcnn_tiny")])
def test_loss_decreases(task_name, model):
    task = _task(task=task_name, model=model)
    batch = _scene_batch(np.random.default_rng(0))
    variables = jax.jit(task.init_variables)(KEY, batch)
    tx = optax.adam(1e-2)
    params, stats = variables["params"], variables["batch_stats"]
    opt = tx.init(params)

    @jax.jit
    def step(params, stats, opt, i):
        def loss_of(p):
            rngs = {"dropout": jax.random.fold_in(KEY, i)}
            kw = {"train": True, "rngs": rngs, "mutable": ["batch_stats"]}
            out, upd = task.apply({"params": p, "batch_stats": stats}, batch, **kw)
            return sum(task.losses(out, batch, None).values()), (upd, out)

        (loss, (upd, out)), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
        updates, opt = tx.update(grads, opt)
        return optax.apply_updates(params, updates), upd["batch_stats"], opt, loss, out

    losses = []
    for i in range(25):
        params, stats, opt, loss, out = step(params, stats, opt, i)
        losses.append(float(loss))
    # 8 regions an image: 2 of them foreground (int(8 * 0.25)), since each image has 2 gt boxes + 8 jittered ones.
    assert out["rois"].shape == (2, 8, 4)
    np.testing.assert_array_equal(np.sum(np.asarray(out["roi_labels"]) >= 1, axis=1), [2, 2])
    assert losses[-1] < 0.5 * losses[0], losses


def test_eval_sees_the_proposals_only():
    task = _task(background_iou_low=0.0)
    batch = _scene_batch(np.random.default_rng(1))
    variables = jax.jit(task.init_variables)(KEY, batch)
    out = jax.jit(task.apply)(variables, batch)
    np.testing.assert_array_equal(out["rois"], batch["proposals"])
    # 10 real proposals an image, all labelled (IoU >= 0), the 2 padding rows never; the sample of 8 holds at most
    # int(8 * 0.25) = 2 foreground (IoU >= 0.5, counted here in NumPy) and background fills the rest.
    weights, labels = np.asarray(out["roi_weights"]), np.asarray(out["roi_labels"])
    for b in range(2):
        fg = sum(
            _iou(p, np.asarray(batch["boxes"][b, :2])).max() >= 0.5 for p in np.asarray(batch["proposals"][b, :10])
        )
        want_fg = min(fg, 2)
        assert weights[b].sum() == want_fg + min(10 - fg, 8 - want_fg)
        assert ((labels[b] >= 1) * weights[b]).sum() == want_fg
    assert weights[:, -2:].sum() == 0
    again = jax.jit(task.apply)(variables, batch)
    np.testing.assert_array_equal(again["roi_weights"], weights)  # a fixed key: the same sample every time
    pred = jax.jit(task.predict)(out, batch)
    assert pred["loss"].shape == (2,) and np.isfinite(pred["loss"]).all()
    assert pred["det_boxes"].shape == (2, 100, 4)
    # An ensemble of one model twice is that model.
    both = jax.jit(task.combine)([pred, pred], batch)
    for key in DETECTION_KEYS:
        np.testing.assert_allclose(both[key], pred[key], rtol=1e-6)


def test_bad_config_names_the_key():
    with pytest.raises(ConfigError, match="config.model.name '_rcnn_tiny' is not a Fast R-CNN model"):
        _task(task="fast_rcnn", model="_rcnn_tiny")
    with pytest.raises(ConfigError, match="config.data.pp_train"):
        config = _config()
        config.data.pp_train = "keep('image', 'boxes', 'box_labels')|pad_boxes(8)|normalize"
        from mlcv import tasks

        tasks.get("fast_rcnn")(config, data.meta(data.get("digit_scenes")))
    with pytest.raises(ConfigError, match="config.detection needs 0 <= background_iou_low"):
        _task(background_iou_low=0.6)
    with pytest.raises(ConfigError, match="config.detection.box_loss"):
        _task(box_loss="l1")


def test_models_are_registered_with_tiny_variants():
    assert {"rcnn", "fast_rcnn"} <= set(models.names())
    assert isinstance(models.get("_rcnn_tiny", num_classes=2), RCNN)
    assert isinstance(models.get("_fast_rcnn_tiny", num_classes=2), FastRCNN)


@pytest.mark.slow
@pytest.mark.parametrize("name,task", [("scenes_rcnn", "rcnn"), ("scenes_fast_rcnn", "fast_rcnn")])
def test_runlocal_through_launch(tmp_path, name, task):
    """``launch.py --config experiments/<name>.py:runlocal``: selective search, training, a summary with a test AP."""
    import json
    import subprocess

    from conftest import ROOT, launch_cmd

    cmd = launch_cmd("--config", str(ROOT / "experiments" / f"{name}.py") + ":runlocal", "--workdir", str(tmp_path))
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["task"] == task and summary["headline_metric"]["name"] == "ap"
    assert 0.0 <= summary["test"]["ap"] <= 1.0
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    # int(64 * 0.25) = 16 foreground regions at most, 64 in all; every image has its gt boxes as foreground.
    rois = [r["train/rois"] for r in records if "train/rois" in r]
    fg = [r["train/foreground_rois"] for r in records if "train/foreground_rois" in r]
    assert rois and all(r == 64 for r in rois) and all(1 <= f <= 16 for f in fg)

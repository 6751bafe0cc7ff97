"""YOLOv3's assignment, targets, losses, decoding and model against values worked by hand; its run via launch.py."""

from __future__ import annotations

import json
import math
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import ROOT, launch_cmd

from experiments import scenes_yolov3
from mlcv import data, models
from mlcv.config import ConfigError
from mlcv.ops.anchor_kmeans import kmeans_anchors
from mlcv.tasks import yolov3 as yt
from mlcv.training import runs

# (h, w) by area; (4, 8) before (8, 4) on the tie. Scales: P0-P2 stride 8, P3-P5 stride 16, P6-P8 stride 32.
PRIORS = np.array([[4, 4], [4, 8], [8, 4], [8, 8], [8, 16], [16, 8], [16, 16], [16, 32], [32, 32]], np.float32)
STRIDES = (8, 16, 32)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _bce(z: float, t: float) -> float:
    return t * math.log(1 + math.exp(-z)) + (1 - t) * math.log(1 + math.exp(z))


def _task(k=4, **options):
    config = scenes_yolov3.get_config("runlocal")
    config.detection.update({"anchors": PRIORS.tolist(), **options})
    task = yt.YOLOv3Task(config, data.meta(data.get("digit_scenes")))
    task.num_classes = k  # the losses and decoding read only this of the dataset
    return task


def test_layout_order():
    lay = yt.layout((64, 64), STRIDES, 3)
    # 8x8, 4x4 and 2x2 cells, 3 priors each: the stride-16 scale starts at 192, stride 32 at 240.
    assert lay["cell"].shape == (252, 2)
    np.testing.assert_array_equal(lay["offset"], [0, 192, 240])
    # Row 5: stride 8, cell (0, 1), its third prior; row 207 = 192 + (1 * 4 + 1) * 3: stride 16, cell (1, 1), P3.
    np.testing.assert_array_equal([lay["cell"][5], lay["cell"][207]], [[0, 1], [1, 1]])
    np.testing.assert_array_equal(
        [lay["stride"][5], lay["prior"][5], lay["stride"][207], lay["prior"][207]], [8, 2, 16, 3]
    )
    assert lay["prior"][251] == 8 and lay["stride"][251] == 32


def test_assignment_by_hand():
    lay = yt.layout((64, 64), STRIDES, 3)
    boxes = jnp.array(
        [
            [
                [
                    10,
                    20,
                    26,
                    36,
                ],  # 16 x 16: P6 exactly (stride 32, its prior 0); centre (18, 28) -> cell (0, 0): row 240
                [40, 2, 48, 18],  # 8 x 16: P4 exactly; centre (44, 10) -> stride-16 cell (2, 0): row 192 + 8 * 3 + 1
                [0, 0, 5, 7],  # 5 x 7: IoU 16/35 (P0), 28/39 (P1), 20/47 (P2), 35/64 (P3) -> P1 at cell (0, 0): row 1
                [1, 1, 6, 8],  # 5 x 7 again, centre (3.5, 4.5): cell (0, 0), P1: collides with the box before it
                [0, 0, 0, 0],  # padding
            ]
        ],
        jnp.float32,
    )
    valid = jnp.array([[1, 1, 1, 1, 0]], jnp.float32)
    labels = jnp.array([[3, 1, 0, 2, 0]])
    assign = jax.jit(lambda b: yt.assign(b, valid, PRIORS, lay, 3))  # one compile, not one per operation
    a = assign(boxes)
    owner = np.asarray(a["owner"][0])
    assert {int(i): int(owner[i]) for i in np.flatnonzero(owner >= 0)} == {240: 0, 217: 1, 1: 2}
    assert float(a["collisions"][0]) == 1
    # Swapped, the later box wins the cell: the first in the box order keeps it.
    swapped = assign(boxes[:, [0, 1, 3, 2, 4]])
    assert int(swapped["owner"][0, 1]) == 2 and float(swapped["collisions"][0]) == 1
    t = jax.jit(lambda o: yt.targets(boxes, labels, o, PRIORS, lay, 4))(a["owner"])
    # Offsets in the cell: 18 / 32, 28 / 32; 44 / 16 - 2, 10 / 16; 2.5 / 8, 3.5 / 8.
    np.testing.assert_allclose(t["offset"][0, [240, 217, 1]], [[0.5625, 0.875], [0.75, 0.625], [0.3125, 0.4375]])
    np.testing.assert_allclose(t["size"][0, [240, 217]], 0, atol=1e-6)
    np.testing.assert_allclose(t["size"][0, 1], [math.log(5 / 4), math.log(7 / 8)], rtol=1e-6)
    np.testing.assert_array_equal(np.argmax(t["classes"][0, [240, 217, 1]], -1), [3, 1, 0])
    assert float(t["positive"].sum()) == 3 and float(t["classes"].sum()) == 3


def test_extra_priors_above_assign_iou_by_hand():
    lay = yt.layout((64, 64), STRIDES, 3)
    # 5 x 7 boxes at (0, 0) and (1, 1): shape IoU 16/35 = 0.457 (P0), 28/39 (P1, the best), 20/47 (P2),
    # 35/64 = 0.547 (P3), under 0.45 for the rest. The 16 x 16 box, centre (18, 28): P6 exactly; 0.5 with P4, P5
    # and P7 (not above 0.5, above 0.45), at stride-16 cell (1, 1) (rows 207 + 1, 207 + 2) and stride-32 (0, 0).
    boxes = jnp.array([[[0, 0, 5, 7], [1, 1, 6, 8], [10, 20, 26, 36], [0, 0, 0, 0]]], jnp.float32)
    valid = jnp.array([[1, 1, 1, 0]], jnp.float32)
    owners = {}
    for extra in (None, 1.0, 0.5, 0.45):
        a = jax.jit(lambda b, e=extra: yt.assign(b, valid, PRIORS, lay, 3, e))(boxes)
        owner = np.asarray(a["owner"][0])
        owners[extra] = {int(i): int(owner[i]) for i in np.flatnonzero(owner >= 0)}
        # The second box loses its best prior (P1 at cell (0, 0)) to the first whatever the extras.
        assert float(a["collisions"][0]) == 1
    assert owners[None] == owners[1.0] == {1: 0, 240: 2}
    # P3: stride 16, cell (0, 0), its prior 0 -> row 192; P0: row 0. The second box finds both taken.
    assert owners[0.5] == {1: 0, 192: 0, 240: 2}
    assert owners[0.45] == {0: 0, 1: 0, 192: 0, 240: 2, 208: 2, 209: 2, 241: 2}
    # An extra never displaces a best prior: the second box alone keeps its P1, the first's extras go elsewhere.
    a = yt.assign(boxes[:, [1, 0, 2, 3]], valid, PRIORS, lay, 3, 0.5)
    assert int(a["owner"][0, 1]) == 0 and int(a["owner"][0, 192]) == 0


def test_decoding_by_hand():
    lay = yt.layout((64, 64), STRIDES, 3)
    box = jnp.zeros((1, 252, 4)).at[0, 207].set([0.0, _logit(0.25), math.log(2), 0.0])
    b = yt.decode_boxes(box, PRIORS, lay)
    # Row 207: cell (1, 1) of stride 16, P3 (8 x 8): centre ((0.5 + 1) 16, (0.25 + 1) 16) = (24, 20), 16 x 8.
    np.testing.assert_allclose(b[0, 207], [16, 16, 32, 24], rtol=1e-6)
    # Row 0: cell (0, 0) of stride 8, P0 (4 x 4) at (4, 4); row 251: cell (1, 1) of stride 32, P8 at (48, 48).
    np.testing.assert_allclose(b[0, [0, 251]], [[2, 2, 6, 6], [32, 32, 64, 64]], rtol=1e-6)


def test_outputs_equal_to_the_targets_detect_the_boxes():
    """Assignment, targets, decoding and detection agree: outputs set to the targets give back the gt boxes."""
    task = _task()
    task.options["pre_nms_top_k"] = 50
    boxes = jnp.array([[[10, 20, 26, 36], [40, 2, 48, 18], [1, 3, 6, 10], [50, 50, 60, 55]]], jnp.float32)
    labels, valid = jnp.array([[3, 1, 0, 2]]), jnp.ones((1, 4))
    lay = task.layout((64, 64))
    owner = yt.assign(boxes, valid, PRIORS, lay, 3)["owner"]
    t = yt.targets(boxes, labels, owner, PRIORS, lay, 4)
    positive = t["positive"][..., None] > 0
    offset = jnp.clip(t["offset"], 1e-6, 1 - 1e-6)
    outputs = {
        "box": jnp.where(positive, jnp.concatenate([jnp.log(offset / (1 - offset)), t["size"]], -1), 0.0),
        "objectness": jnp.where(positive[..., 0], 20.0, -20.0),
        "class_logits": jnp.where(t["classes"] > 0, 20.0, -20.0),
    }
    batch = {"image": jnp.zeros((1, 64, 64, 3)), "boxes": boxes, "box_labels": labels, "box_mask": valid}
    det = jax.jit(task.predict)(outputs, batch)
    n = int(det["det_mask"][0].sum())
    assert n == 4
    order = np.argsort(np.asarray(det["det_classes"][0, :n]))
    np.testing.assert_array_equal(det["det_classes"][0, :n][order], [0, 1, 2, 3])
    np.testing.assert_allclose(det["det_boxes"][0, :n][order], boxes[0, [2, 1, 3, 0]], atol=1e-3)


def test_detections_score_objectness_times_class():
    task = _task()
    n = 252
    outputs = {
        "box": jnp.zeros((1, n, 4)).at[0, 207].set([0.0, _logit(0.25), math.log(2), 0.0]),
        "objectness": jnp.full((1, n), -20.0).at[0, 207].set(_logit(0.8)).at[0, 0].set(_logit(0.5)),
        "class_logits": jnp.full((1, n, 4), -20.0).at[0, 207, 2].set(_logit(0.9)).at[0, 0, 1].set(_logit(0.1)),
    }
    batch = {"image": jnp.zeros((1, 64, 64, 3)), "boxes": jnp.zeros((1, 1, 4)), "box_labels": jnp.zeros((1, 1), int)}
    batch["box_mask"] = jnp.zeros((1, 1))
    det = jax.jit(task.predict)(outputs, batch)
    # 0.8 x 0.9 = 0.72 at row 207, class 2; 0.5 x 0.1 = 0.05 at row 0, class 1; the rest ~1e-9 < 0.01.
    assert int(det["det_mask"][0].sum()) == 2
    np.testing.assert_allclose(det["det_scores"][0, :2], [0.72, 0.05], rtol=1e-5)
    np.testing.assert_array_equal(det["det_classes"][0, :2], [2, 1])
    np.testing.assert_allclose(det["det_boxes"][0, :2], [[16, 16, 32, 24], [2, 2, 6, 6]], rtol=1e-5)
    # An ensemble of the same member twice detects the same; of it and a silent member, objectness halves.
    twice = task.combine([det, det], batch)
    np.testing.assert_allclose(twice["det_scores"], det["det_scores"], rtol=1e-6)
    silent = {**det, "objectness": jnp.zeros_like(det["objectness"])}
    np.testing.assert_allclose(task.combine([det, silent], batch)["det_scores"][0, :2], [0.36, 0.025], rtol=1e-5)


def _losses(task, outputs, batch):
    """``task.losses`` jitted, compiled once per task."""
    if not hasattr(task, "_jitted_losses"):
        task._jitted_losses = jax.jit(lambda o, b: task.losses(o, b, None))
    return task._jitted_losses(outputs, batch)


def _one_box_case():
    """A 32x32 image with one 8 x 8 box of class 2 on P3 (stride 16, cell (0, 0), row 48 of 63)."""
    boxes = jnp.array([[[4, 4, 12, 12]]], jnp.float32)
    batch = {"image": jnp.zeros((1, 32, 32, 3)), "boxes": boxes, "box_labels": jnp.array([[2]])}
    batch["box_mask"] = jnp.ones((1, 1))
    # Every other box shrunk by e^-5 (IoU ~0 with the object); objectness and class logits 0 but at row 48.
    outputs = {
        "box": jnp.full((1, 63, 4), -5.0).at[0, 48].set([1.0, -1.0, 0.2, -0.3]),
        "objectness": jnp.zeros((1, 63)).at[0, 48].set(2.0),
        "class_logits": jnp.zeros((1, 63, 4)).at[0, 48, 2].set(3.0),
    }
    return outputs, batch


@pytest.mark.parametrize("box_loss", ["bce", "sse"])
def test_losses_by_hand(box_loss):
    task = _task(box_loss=box_loss)
    outputs, batch = _one_box_case()
    losses = _losses(task, outputs, batch)
    # Targets at row 48: offsets (8 / 16, 8 / 16) = (0.5, 0.5), sizes log(8 / 8) = 0.
    size = 0.5 * (0.2**2 + 0.3**2)
    sig = 1 / (1 + math.exp(-1.0))
    centre = _bce(1.0, 0.5) + _bce(-1.0, 0.5) if box_loss == "bce" else 0.5 * (sig - 0.5) ** 2 * 2
    assert float(losses["box"]) == pytest.approx(centre + size, rel=1e-5)
    # The positive's objectness at logit 2, the 62 negatives at logit 0: log 2 each.
    assert float(losses["objectness"]) == pytest.approx(_bce(2.0, 1.0) + 62 * math.log(2), rel=1e-5)
    # Classes at the positive only: class 2 at logit 3, three others at 0.
    assert float(losses["classes"]) == pytest.approx(_bce(3.0, 1.0) + 3 * math.log(2), rel=1e-5)
    np.testing.assert_allclose(
        jax.jit(task.predict)(outputs, batch)["loss"], [sum(float(v) for v in losses.values())], rtol=1e-5
    )


def test_predictions_overlapping_a_box_are_not_negatives():
    task = _task()
    outputs, batch = _one_box_case()
    # Row 0 (stride 8, cell (0, 0), P0 4 x 4) decoded to centre (7.92, 7.92), 8 x 8: IoU 7.92^2 / (128 - 7.92^2)
    # = 0.96 with the box: ignored. Its objectness then moves nothing; row 1 (IoU ~0) is still a negative.
    moved = {**outputs, "box": outputs["box"].at[0, 0].set([_logit(0.99), _logit(0.99), math.log(2), math.log(2)])}
    base = float(_losses(task, moved, batch)["objectness"])
    assert base == pytest.approx(_bce(2.0, 1.0) + 61 * math.log(2), rel=1e-5)
    hot = {**moved, "objectness": moved["objectness"].at[0, 0].set(5.0)}
    assert float(_losses(task, hot, batch)["objectness"]) == pytest.approx(base, rel=1e-6)
    hot = {**moved, "objectness": moved["objectness"].at[0, 1].set(5.0)}
    assert float(_losses(task, hot, batch)["objectness"]) == pytest.approx(base - math.log(2) + _bce(5, 0), 1e-5)
    # With ignore_iou 1 nothing is ignored: row 0 is a negative again.
    strict = float(_losses(_task(ignore_iou=1.0), moved, batch)["objectness"])
    assert strict == pytest.approx(_bce(2.0, 1.0) + 62 * math.log(2), rel=1e-5)


def _variables(model, x):
    """Variables of the model's shapes without ``model.init`` (half a minute to compile on a 2-core CPU):
    kernels N(0, 1 / fan-in) (Flax's default, LeCun normal), batch-norm scales 1, biases 0 but the outputs'."""
    rng = np.random.default_rng(0)

    def fill(path, leaf):
        name = jax.tree_util.keystr(path)
        if name.endswith("['kernel']"):
            return jnp.asarray(rng.normal(size=leaf.shape) / math.sqrt(np.prod(leaf.shape[:-1])), jnp.float32)
        if "output" in name and name.endswith("['bias']"):
            return model._bias(None, leaf.shape)
        return jnp.ones(leaf.shape) if name.endswith(("['scale']", "['var']")) else jnp.zeros(leaf.shape)

    return jax.tree_util.tree_map_with_path(fill, jax.eval_shape(model.init, jax.random.key(0), x))


def test_model_three_scales_in_order():
    model = models.get("_yolov3_tiny", num_classes=10)
    x = jax.random.normal(jax.random.key(1), (2, 96, 96, 3))
    variables = _variables(model, x)
    apply = jax.jit(lambda v, x: model.apply(v, x, capture_intermediates=True, mutable=["intermediates"]))
    out, state = apply(variables, x)
    assert model.strides == (8, 16, 32)
    n = (12 * 12 + 6 * 6 + 3 * 3) * 3
    assert (
        out["box"].shape == (2, n, 4) and out["objectness"].shape == (2, n) and out["class_logits"].shape == (2, n, 10)
    )
    # The rows are the output convolutions' maps, finest first, cells row-major, then A = 3 priors of 5 + 10 channels.
    maps = [state["intermediates"][f"output{s}"]["__call__"][0] for s in range(3)]
    assert [m.shape for m in maps] == [(2, 12, 12, 45), (2, 6, 6, 45), (2, 3, 3, 45)]
    rows = jnp.concatenate([m.reshape(2, -1, 15) for m in maps], axis=1)
    np.testing.assert_array_equal(out["box"], rows[..., :4])
    np.testing.assert_array_equal(out["objectness"], rows[..., 4])
    np.testing.assert_array_equal(out["class_logits"], rows[..., 5:])
    # The output convolutions' bias initializer: 0, but each prior's objectness at log(0.01 / 0.99).
    bias = np.asarray(model._bias(None, (45,))).reshape(3, 15)
    np.testing.assert_allclose(bias[:, 4], math.log(0.01 / 0.99), rtol=1e-6)
    np.testing.assert_array_equal(np.delete(bias, 4, axis=1), 0)


def test_top_down_path_concatenates():
    model = models.get("yolov3", num_classes=2, stage_features=(4, 6, 10, 12, 14), head_features=(8, 16, 32))
    params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3))))["params"]
    kernel = lambda name: params[name]["Conv_0"]["kernel"].shape  # noqa: E731
    # Stride 32 starts from C5 (14 channels). Its block (f = 32) is routed to the next scale's f = 16 channels,
    # upsampled and concatenated with C4 (12): 28 in. The stride-16 block routes 8, concatenated with C3 (10): 18.
    assert kernel("block2_0")[2] == 14
    assert kernel("route1")[2:] == (32, 16) and kernel("block1_0")[2] == 16 + 12
    assert kernel("route0")[2:] == (16, 8) and kernel("block0_0")[2] == 8 + 10
    assert params["output0"]["kernel"].shape == (1, 1, 2 * 8, 3 * (5 + 2))


def test_loss_decreases_on_a_tiny_batch():
    task = _task(k=10)
    # Three stages (strides 2, 4, 8) rather than five: a third of the compile time, the same network otherwise.
    task.model = models.get("yolov3", num_classes=10, stage_features=(8, 8, 8), head_features=(8, 8, 8))
    task.strides = task.model.strides
    rng = np.random.default_rng(0)
    batch = {
        "image": jnp.asarray(rng.normal(size=(2, 32, 32, 3)), jnp.float32),
        "boxes": jnp.array([[[4, 4, 12, 12], [10, 14, 26, 30]], [[16, 2, 30, 10], [0, 0, 0, 0]]], jnp.float32),
        "box_labels": jnp.array([[2, 7], [5, 0]]),
        "box_mask": jnp.array([[1, 1], [1, 0]], jnp.float32),
    }
    variables = _variables(task.model, batch["image"])
    opt = optax.adam(1e-2)
    state = opt.init(variables["params"])

    def loss_fn(params, stats):
        out, new = task.model.apply(
            {"params": params, "batch_stats": stats}, batch["image"], train=True, mutable=["batch_stats"]
        )
        return sum(task.losses(out, batch, None).values()), new["batch_stats"]

    @jax.jit
    def step(params, stats, state):
        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, stats)
        updates, state = opt.update(grads, state)
        return optax.apply_updates(params, updates), stats, state, loss

    params, stats, losses = variables["params"], variables["batch_stats"], []
    for _ in range(15):
        params, stats, state, loss = step(params, stats, state)
        losses.append(float(loss))
    assert all(np.isfinite(losses)) and losses[-1] < 0.5 * losses[0], losses


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="config.detection.box_loss"):
        _task(box_loss="giou")
    with pytest.raises(ConfigError, match="config.detection.anchors"):
        _task(anchors=[[10, 10], [20, 20]])
    with pytest.raises(ConfigError, match="config.detection.anchors"):
        _task(anchors=tuple("kmeans"))  # what a command-line string makes of a tuple-valued key
    with pytest.raises(ConfigError, match="config.detection.assign_iou"):
        _task(assign_iou=1.5)
    config = scenes_yolov3.get_config("runlocal")
    config.detection = {**config.detection, "anchors": "kmeans"}
    with pytest.raises(ConfigError, match="config.detection.anchors = 'kmeans' needs"):
        yt.YOLOv3Task(config, data.meta(data.get("digit_scenes")))


def test_kmeans_priors_from_given_boxes(capsys):
    config = scenes_yolov3.get_config("runlocal")
    config.detection = {**config.detection, "anchors": "kmeans"}
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 40, (30, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(4, 40, (30, 2))], 1)
    task = yt.YOLOv3Task(config, data.meta(data.get("digit_scenes")), train_boxes=[boxes[:10], boxes[10:]])
    want, iou = kmeans_anchors(boxes[:, 2:] - boxes[:, :2], 9, seed=0)
    np.testing.assert_allclose(task.priors, want, rtol=1e-6)
    assert task.prior_iou == iou
    assert f"mean IoU {iou:.3f}" in capsys.readouterr().err


def test_kmeans_priors_from_the_training_split_after_pp_eval():
    """build_task fits the priors to the training boxes in the frame pp_eval gives: here halved by resize(48)."""
    config = scenes_yolov3.get_config("runlocal")
    config.detection = {**config.detection, "anchors": "kmeans"}
    config.data.pp_eval = "keep('image', 'boxes', 'box_labels')|resize(48)|pad_boxes(8)|normalize"
    spec = data.get("digit_scenes")
    task = runs.build_task(config, data.meta(spec))
    src = data.source(spec, "train[:32]")
    boxes = np.concatenate([np.asarray(src[i]["boxes"]) for i in range(len(src))])  # 96 px scenes
    want, iou = kmeans_anchors((boxes[:, 2:] - boxes[:, :2]) / 2, 9, seed=0)
    np.testing.assert_allclose(task.priors, want, rtol=1e-5)
    assert task.prior_iou == pytest.approx(iou)
    assert runs.build_task(config, data.meta(spec), src).priors.tobytes() == task.priors.tobytes()


@pytest.mark.slow  # builds digit_scenes in the test session's data dir (about a minute)
def test_experiment_priors_are_the_kmeans_of_the_training_boxes():
    spec = data.get("digit_scenes")
    src = data.source(spec, spec.splits["train"])
    boxes = np.concatenate([np.asarray(src[i]["boxes"]) for i in range(len(src))])
    priors, iou = kmeans_anchors(boxes[:, 2:] - boxes[:, :2], 9, seed=0)
    np.testing.assert_allclose(scenes_yolov3.PRIORS, priors, atol=0.05)
    assert len(boxes) == 7032 and round(iou, 3) == 0.871


@pytest.mark.slow  # about two minutes on a shared 2-core CPU, most of it building digit_scenes and compiling
def test_runlocal_through_launch(tmp_path):
    workdir = tmp_path / "run"
    config = str(ROOT / "experiments" / "scenes_yolov3.py") + ":runlocal"
    out = subprocess.run(
        launch_cmd("--config", config, "--workdir", str(workdir)), capture_output=True, text=True, cwd=ROOT, timeout=900
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "test ap" in out.stdout
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["task"] == "yolov3" and summary["headline_metric"]["name"] == "ap"
    assert 0.0 <= summary["test"]["ap"] <= 1.0
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert any("train/positives" in r and r["train/positives"] > 0 for r in records)

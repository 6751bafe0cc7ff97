"""The segmentation task: its loss by hand, padded rows, the small FCN, and a run through the unchanged loop."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

import mlcv
from experiments import bodies_fcn
from mlcv import data, evaluators, models, tasks
from mlcv.config import ConfigError
from mlcv.data.features import from_features
from mlcv.models import layer_table
from mlcv.tasks.base import StepContext

H, W = 8, 8
# Jitted once each: eager JAX compiles every primitive apart, which costs more than these tests compute.
_REF_CE = jax.jit(optax.softmax_cross_entropy_with_integer_labels)


def _task(ignore_label: int | None = 255) -> tasks.Task:
    config = bodies_fcn.get_config("runlocal")
    config.segmentation.ignore_label = ignore_label
    config.model = ml_collections.ConfigDict({"name": "_small_fcn_tiny"})
    return tasks.get("segmentation")(config, from_features(data.get("bodies").features))


def _logits_labels(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random logits [3, H, W, 11] and uint8 labels with ~30 % of the pixels 255 (ignored)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 11, (3, H, W))
    labels[rng.random(labels.shape) < 0.3] = 255
    return (3 * rng.standard_normal((3, H, W, 11))).astype(np.float32), labels.astype(np.uint8)


def test_loss_is_optax_cross_entropy_averaged_over_labelled_pixels():
    task = _task()
    logits, labels = _logits_labels()
    valid = labels != 255
    ce = np.asarray(_REF_CE(logits, np.where(valid, labels, 0).astype(np.int32)))
    context = StepContext(step=jnp.zeros((), jnp.int32))
    terms = jax.jit(lambda lo, b: task.losses(lo, b, context))(logits, {"segmentation": labels})
    assert list(terms) == ["softmax_xent"]
    np.testing.assert_allclose(float(terms["softmax_xent"]), ce[valid].mean(), rtol=1e-6)
    acc = jax.jit(task.train_metrics)(logits, {"segmentation": labels})["pixel_accuracy"]
    np.testing.assert_allclose(float(acc), (logits.argmax(-1) == labels)[valid].mean(), rtol=1e-6)
    # ignore_label=None counts every pixel.
    full = np.where(valid, labels, 3).astype(np.uint8)
    plain = _task(ignore_label=None)
    counted = jax.jit(lambda lo, b: plain.losses(lo, b, context))(logits, {"segmentation": full})["softmax_xent"]
    np.testing.assert_allclose(float(counted), np.asarray(_REF_CE(logits, full.astype(np.int32))).mean(), rtol=1e-6)


def test_predict_per_example_loss_and_padded_rows():
    """Each row's mean over its own labelled pixels; a padded or fully ignored row gives 0, never NaN."""
    task = _task()
    logits, labels = _logits_labels(1)
    labels[2] = 255  # a row without any labelled pixel
    preds = jax.jit(task.predict)(logits, {"segmentation": labels})
    assert preds["logits"].shape == (3, H, W, 11) and preds["loss"].shape == (3,)
    ce = np.asarray(_REF_CE(logits, labels.astype(np.int32) % 255))
    for i in range(2):
        np.testing.assert_allclose(float(preds["loss"][i]), ce[i][labels[i] != 255].mean(), rtol=1e-6)
    assert float(preds["loss"][2]) == 0.0
    # Through the loss evaluator with the row masked out, as the loop's padded last batch is.
    ev = evaluators.build({"type": "loss"})
    ev.update(jax.device_get(ev.batch_fn(preds, {"mask": np.array([1.0, 1.0, 0.0], np.float32)})))
    np.testing.assert_allclose(ev.result()[0]["loss"], float(preds["loss"][:2].mean()), rtol=1e-6)


def test_coarse_logits_are_upsampled_to_the_labels():
    task = _task()
    coarse = np.random.default_rng(2).standard_normal((2, H // 2, W // 2, 11)).astype(np.float32)
    labels = np.zeros((2, H, W, 1), np.uint8)  # a trailing channel is accepted too

    def check(coarse, labels):
        preds = task.predict(coarse, {"segmentation": labels})
        up = jax.image.resize(coarse, (2, H, W, 11), "bilinear")
        # One member's ensemble is the member itself: log-softmax logits, the same loss.
        one = task.combine([preds], {"segmentation": labels})
        return preds, up, one

    preds, up, one = jax.jit(check)(coarse, labels)
    np.testing.assert_allclose(preds["logits"], up, rtol=1e-6)
    np.testing.assert_allclose(one["logits"], jax.nn.log_softmax(up), atol=1e-5)
    np.testing.assert_allclose(one["loss"], preds["loss"], rtol=1e-5)


def test_default_evaluators_read_the_config():
    evs = _task().default_evaluators()
    assert evs["segmentation"]["exclude_from_mean"] == (0,) and evs["segmentation"]["num_classes"] == 11
    assert evs["segmentation"]["ignore_label"] == 255 and set(evs) == {"loss", "segmentation"}


# layer_table's receptive fields by hand: patchify 4/4 -> 4 (jump 4); each dilated 3x3 adds 2 * 4 * d; the
# transposed 4/4 conv adds (4 - 1) steps of 1 pixel (layer_table's convention) and the 3x3 refinement 2.
@pytest.mark.parametrize(
    "name,rf", [("small_fcn", 4 + 8 * (1 + 2 + 4 + 1) + 3 + 2), ("_small_fcn_tiny", 4 + 8 * 3 + 5)]
)
def test_fcn_shapes_and_receptive_field(name, rf):
    """Logits at the input's size; the full model's receptive field covers the 64x64 picture (a body is ~40 px)."""
    model = models.get(name, num_classes=11)
    out = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x)[0], jnp.zeros((2, 64, 64, 1)))
    assert out.shape == (2, 64, 64, 11)
    rows = layer_table.layer_table(model, (64, 64, 1))
    assert rows[-1].name == "classifier" and rows[-1].out_shape == (64, 64, 11)
    assert max(r.receptive_field for r in rows if r.receptive_field) == (rf, rf)
    assert name != "small_fcn" or rf >= 64
    with pytest.raises(ValueError, match="divisible"):
        jax.eval_shape(lambda x: model.init(jax.random.key(0), x), jnp.zeros((1, 30, 30, 1)))


def test_runlocal_through_the_unchanged_loop(tmp_path):
    """The one training loop runs the task as it is: summary with test mIoU, headline and the evaluator's plots."""
    summary = mlcv.run(bodies_fcn.get_config("runlocal"), tmp_path)
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["task"] == "segmentation" and written["headline_metric"]["name"] == "miou"
    assert 0.0 <= written["test"]["miou"] <= 1.0 and written["headline"].startswith("test miou ")
    assert summary["selected_on"] == {"metric": "miou", "mode": "max"}
    assert (
        len(written["test_per_class_iou"]) == 11 and np.asarray(written["test_confusion_matrix"]).sum() == 100 * 64 * 64
    )
    for plot in ("iou_test.png", "confusion_test.png", "miou.png"):
        assert (tmp_path / "plots" / plot).is_file()


def test_range_checks_name_the_classes_and_the_ignore_label():
    """The task asks the pipeline to check every label map against its classes and ignore label (the bodies' 11)."""
    assert _task().range_checks() == {"segmentation": (11, 255)}
    assert _task(None).range_checks() == {"segmentation": (11, None)}


def test_label_maps_of_another_size_than_the_images_raise_naming_the_dataset():
    """8x8 images with 6x6 label maps: a ConfigError with both shapes, in training and evaluation alike."""
    task = _task()
    batch = {"image": jnp.zeros((2, H, W, 1)), "segmentation": jnp.zeros((2, 6, 6), jnp.uint8)}
    logits = jnp.zeros((2, H, W, 11))
    with pytest.raises(ConfigError, match=r"'bodies'.*\(2, 6, 6\) do not match the images \(2, 8, 8, 1\)"):
        task.losses(logits, batch, None)
    with pytest.raises(ConfigError, match=r"\(2, 6, 6\)"):
        task.predict(logits, batch)

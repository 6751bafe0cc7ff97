"""Tests of mlcv.evaluators: each evaluator run as the loop runs it (``jax.jit(batch_fn)`` over batches
whose last one is padded with garbage rows of mask 0) and compared with scikit-learn on the unpadded data."""

import types
import warnings

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import sklearn.metrics as skm

from mlcv import evaluators, metrics
from mlcv.config import ConfigError
from mlcv.evaluators import plots, ranking

BATCH = 64


def batches(arrays: dict[str, np.ndarray], rng: np.random.Generator, batch_size: int = BATCH):
    """Splits equal-length arrays into batches of ``batch_size``; the last is padded with random rows, mask 0."""
    n = len(next(iter(arrays.values())))
    out = []
    for start in range(0, n, batch_size):
        real = min(batch_size, n - start)
        batch = {}
        for key, a in arrays.items():
            pad = a[rng.integers(0, n, batch_size - real)]  # garbage that a missed mask would count
            batch[key] = np.concatenate([a[start : start + real], pad])
        batch["mask"] = np.r_[np.ones(real), np.zeros(batch_size - real)].astype(np.float32)
        out.append(batch)
    assert out[-1]["mask"].sum() < batch_size  # the padding is exercised
    return out


def run(ev: evaluators.Evaluator, data: list[dict[str, np.ndarray]], output_keys: tuple[str, ...]):
    """One pass as the training loop makes it; returns ``ev.result()``."""
    step = jax.jit(ev.batch_fn)
    for batch in data:
        outputs = {k: batch[k] for k in output_keys}
        inputs = {k: v for k, v in batch.items() if k not in output_keys}
        ev.update(jax.device_get(step(outputs, inputs)))
    scalars, extras = ev.result()
    assert set(scalars) == set(ev.directions)  # the contract: every scalar has a direction
    assert ev.percent <= set(ev.directions)
    assert all(isinstance(v, float) for v in scalars.values())
    return scalars, extras


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_loss_is_todays_arithmetic_bit_for_bit():
    rng = np.random.default_rng(0)
    loss = rng.gamma(2.0, size=203).astype(np.float32)
    data = batches({"loss": loss}, rng)
    ev = evaluators.build({"type": "loss"})
    scalars, extras = run(ev, data, ("loss",))
    # Before evaluators: a float32 masked sum per batch on device, Python floats added on the host,
    # divided by the number of real examples.
    device_sum = jax.jit(lambda loss, mask: jnp.sum(loss * mask))
    total = 0.0
    for b in data:
        total += float(device_sum(b["loss"], b["mask"]))
    assert scalars["loss"] == total / 203
    assert scalars["loss"] == pytest.approx(np.mean(loss.astype(np.float64)), rel=1e-6)
    assert extras == {} and ev.directions == {"loss": "min"}
    ev.reset()
    assert np.isnan(ev.result()[0]["loss"])


def test_classification_vs_sklearn(tmp_path):
    rng = np.random.default_rng(1)
    n, c = 203, 5
    labels = rng.choice(c, size=n, p=[0.4, 0.3, 0.15, 0.1, 0.05]).astype(np.int32)
    logits = (rng.normal(size=(n, c)) + 1.5 * np.eye(c)[labels]).astype(np.float32)
    meta = types.SimpleNamespace(num_classes=c, class_names=tuple("abcde"))
    ev = evaluators.build({"type": "classification"}, meta)
    assert ev.num_classes == c and ev.class_names == tuple("abcde")
    data = batches({"logits": logits, "label": labels}, rng)
    scalars, extras = run(ev, data, ("logits",))
    predictions = logits.argmax(-1)
    expected = skm.confusion_matrix(labels, predictions, labels=np.arange(c))
    np.testing.assert_array_equal(extras["confusion_matrix"], expected)
    assert scalars["accuracy"] == pytest.approx(skm.accuracy_score(labels, predictions), rel=1e-12)
    assert scalars["mean_class_accuracy"] == pytest.approx(skm.balanced_accuracy_score(labels, predictions), rel=1e-12)
    recall = skm.recall_score(labels, predictions, labels=np.arange(c), average=None)
    np.testing.assert_allclose(extras["per_class_accuracy"], recall, rtol=1e-12)
    assert scalars == metrics.summarize_confusion(np.asarray(expected, np.float64))
    assert ev.percent == {"accuracy", "mean_class_accuracy"}
    # A second pass after reset gives the same numbers.
    ev.reset()
    assert run(ev, data, ("logits",)) == (scalars, extras)
    (path,) = ev.plot(extras, tmp_path, "test")
    assert path == tmp_path / "confusion_test.png" and path.stat().st_size > 0


C_SEG = 6  # classes 0-3 in the ground truth, 4 only predicted, 5 neither


def _segmentation_data(rng):
    n, h, w = 13, 12, 10
    # Each image holds two of the classes 0-3, so every image lacks some class.
    labels = np.empty((n, h, w), np.uint8)
    for i in range(n):
        labels[i] = rng.choice([i % 4, (i + 1) % 4], size=(h, w))
    labels[rng.random(labels.shape) < 0.1] = 255  # ignored pixels
    logits = rng.normal(size=(n, h, w, C_SEG)) + 1.2 * np.eye(C_SEG + 1)[np.minimum(labels, C_SEG)][..., :C_SEG]
    logits[..., 4] += 0.3  # class 4: predicted now and then, never true
    logits[..., 5] = -1e9  # class 5: never predicted, never true
    real = {"segmentation": labels[..., None], "logits": logits.astype(np.float32)}
    data = batches(real, rng, batch_size=4)
    for b in data:  # padding that holds class 5, which a missed mask would reveal
        b["segmentation"][b["mask"] == 0] = 5
    keep = labels != 255
    return data, labels[keep].astype(int), logits.argmax(-1)[keep]


def test_segmentation_vs_sklearn(tmp_path):
    rng = np.random.default_rng(2)
    data, y_true, y_pred = _segmentation_data(rng)
    ev = evaluators.build({"type": "segmentation", "num_classes": C_SEG})
    scalars, extras = run(ev, data, ("logits",))
    np.testing.assert_array_equal(
        extras["confusion_matrix"], skm.confusion_matrix(y_true, y_pred, labels=np.arange(C_SEG))
    )
    assert set(y_pred) >= {4} and not {4, 5} & set(y_true) and 5 not in set(y_pred)
    iou = np.asarray(extras["per_class_iou"])
    jaccard = skm.jaccard_score(y_true, y_pred, labels=np.arange(5), average=None)
    np.testing.assert_allclose(iou[:5], jaccard, rtol=1e-12)
    assert iou[4] == 0.0 and np.isnan(iou[5])  # predicted but absent: 0; absent from both: NaN
    assert scalars["miou"] == pytest.approx(jaccard.mean(), rel=1e-12)
    assert scalars["pixel_accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred), rel=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns that class 4 is predicted but never true
        balanced = skm.balanced_accuracy_score(y_true, y_pred)
    assert scalars["mean_accuracy"] == pytest.approx(balanced, rel=1e-12)
    support = np.bincount(y_true, minlength=5)[:5]
    assert scalars["fw_iou"] == pytest.approx((support * jaccard).sum() / support.sum(), rel=1e-12)
    recall = skm.recall_score(y_true, y_pred, labels=np.arange(4), average=None)
    np.testing.assert_allclose(extras["per_class_accuracy"][:4], recall, rtol=1e-12)
    assert np.isnan(extras["per_class_accuracy"][4:]).all()

    # Background excluded: out of the means, still in pixel accuracy and the extras.
    ev0 = evaluators.build({"type": "segmentation", "num_classes": C_SEG, "exclude_from_mean": [0]})
    s0, e0 = run(ev0, data, ("logits",))
    assert s0["miou"] == pytest.approx(jaccard[1:].mean(), rel=1e-12)
    assert s0["pixel_accuracy"] == scalars["pixel_accuracy"]
    assert s0["mean_accuracy"] == pytest.approx(recall[1:].mean(), rel=1e-12)
    assert s0["fw_iou"] == pytest.approx((support * jaccard)[1:].sum() / support[1:].sum(), rel=1e-12)
    np.testing.assert_array_equal(e0["confusion_matrix"], extras["confusion_matrix"])

    paths = ev.plot(extras, tmp_path, "validation")
    assert [p.name for p in paths] == ["iou_validation.png", "confusion_validation.png"]
    assert all(p.stat().st_size > 0 for p in paths)


def test_boundary_band_by_hand():
    """Two halves, 0 | 1, with w = 1: the band is the two columns on either side of the edge. A prediction one
    column off the edge scores IoU 1/2 in the band for both classes; 1 - 2/36 of the pixels over the image."""
    labels = np.zeros((1, 6, 6), np.int32)
    labels[:, :, 3:] = 1
    predictions = np.zeros((1, 6, 6), np.int64)
    predictions[:, :, 4:] = 1  # column 3 wrongly 0
    logits = np.eye(2, dtype=np.float32)[predictions]
    ev = evaluators.build({"type": "segmentation", "num_classes": 2, "boundary_width": 1})
    batch = {"segmentation": labels, "mask": np.ones(1, np.float32)}
    ev.update(jax.device_get(jax.jit(ev.batch_fn)({"logits": logits}, batch)))
    scalars, extras = ev.result()
    # Band: columns 2 (class 0) and 3 (class 1), 6 pixels each; column 3 predicted 0.
    np.testing.assert_array_equal(extras["boundary_confusion_matrix"], [[6, 0], [6, 0]])
    assert scalars["boundary_miou"] == pytest.approx((6 / 12 + 0) / 2)
    assert scalars["boundary_pixel_accuracy"] == pytest.approx(0.5)
    assert scalars["pixel_accuracy"] == pytest.approx(30 / 36)


@pytest.mark.parametrize("width", [1, 3])
def test_boundary_band_vs_scipy(width):
    """The band equals scipy's max filter != min filter over the labelled pixels, ignored pixels neutral; its scores
    equal scikit-learn's on the band's pixels."""
    from scipy import ndimage

    rng = np.random.default_rng(width)
    data, _, _ = _segmentation_data(rng)
    ev = evaluators.build({"type": "segmentation", "num_classes": C_SEG, "boundary_width": width})
    scalars, extras = run(ev, data, ("logits",))
    y_true, y_pred = [], []
    for b in data:
        for labels, logits in zip(b["segmentation"][b["mask"] > 0, ..., 0], b["logits"][b["mask"] > 0], strict=True):
            labels = labels.astype(int)
            valid = labels != 255
            size = 2 * width + 1
            hi = ndimage.maximum_filter(np.where(valid, labels, -1), size=size, mode="constant", cval=-1)
            lo = ndimage.minimum_filter(np.where(valid, labels, 99), size=size, mode="constant", cval=99)
            band = valid & (hi != lo)
            y_true.append(labels[band])
            y_pred.append(logits.argmax(-1)[band])
    y_true, y_pred = np.concatenate(y_true), np.concatenate(y_pred)
    assert 0 < len(y_true) < sum(int((b["mask"] > 0).sum()) for b in data) * 120
    np.testing.assert_array_equal(
        extras["boundary_confusion_matrix"], skm.confusion_matrix(y_true, y_pred, labels=np.arange(C_SEG))
    )
    present = np.union1d(y_true, y_pred)
    jaccard = skm.jaccard_score(y_true, y_pred, labels=present, average=None)
    assert scalars["boundary_miou"] == pytest.approx(jaccard.mean(), rel=1e-12)
    assert scalars["boundary_pixel_accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred), rel=1e-12)


def test_segmentation_examples_overlay(tmp_path):
    """The first real images of the split are kept with their ground truth (ignored pixels as 255) and the argmax
    predictions, losslessly; padded rows never; the figure has a row of (image, ground truth, predicted) each."""
    rng = np.random.default_rng(3)
    data, _, _ = _segmentation_data(rng)
    for b in data:
        b["image"] = rng.normal(size=b["segmentation"].shape[:3] + (3,)).astype(np.float32)
    labels = np.concatenate([b["segmentation"][b["mask"] > 0, ..., 0] for b in data])
    logits = np.concatenate([b["logits"][b["mask"] > 0] for b in data])
    images = np.concatenate([b["image"][b["mask"] > 0] for b in data])
    for draw, expected in ((6, 6), (20, 13)):  # 13 real images in batches of 4: 3 padded rows at the end
        ev = evaluators.build({"type": "segmentation", "num_classes": C_SEG, "draw_images": draw})
        _, extras = run(ev, data, ("logits",))
        examples = extras["segmentation_examples"]
        assert len(examples) == expected
        for i, ex in enumerate(examples):
            np.testing.assert_array_equal(plots.png_labels(ex["labels_png"]), labels[i])
            np.testing.assert_array_equal(plots.png_labels(ex["predictions_png"]), logits[i].argmax(-1))
            rgb = plots.png_image(ex["image_png"])[..., :3]  # min-max scaled to 0..1, up to 8-bit rounding
            x = images[i]
            np.testing.assert_allclose(rgb, (x - x.min()) / (x.max() - x.min()), atol=0.5 / 255 + 1e-6)
    paths = ev.plot(extras, tmp_path, "test")
    assert [p.name for p in paths] == ["iou_test.png", "confusion_test.png", "examples_test.png"]
    assert all(p.stat().st_size > 0 for p in paths)
    without = evaluators.build({"type": "segmentation", "num_classes": C_SEG, "draw_images": 0})
    assert run(without, data, ("logits",))[1]["segmentation_examples"] == []


@pytest.mark.parametrize("seed", range(5))
def test_average_precision_function_vs_sklearn(seed):
    """The NumPy AP equals sklearn's to 1e-12, with heavy ties (1 decimal) and without."""
    rng = np.random.default_rng(seed)
    positive = rng.random(500) < 0.3
    for scores in (np.round(rng.random(500) * 0.7 + 0.3 * positive, 1), rng.random(500) + 0.2 * positive):
        assert ranking.average_precision(positive, scores) == pytest.approx(
            skm.average_precision_score(positive, scores), abs=1e-12
        )
        for drop in (False, True):
            got = ranking.precision_recall_curve(positive, scores, drop_intermediate=drop)
            expected = skm.precision_recall_curve(positive, scores, drop_intermediate=drop)
            for g, e in zip(got, expected, strict=True):
                np.testing.assert_allclose(g, e, rtol=0, atol=1e-12)


def test_average_precision_evaluator_with_ties_vs_sklearn(tmp_path):
    rng = np.random.default_rng(3)
    n = 203
    labels = rng.integers(0, 3, n).astype(np.int32)
    score = np.round(rng.random(n) * 0.6 + 0.4 * (labels == 1), 1).astype(np.float32)  # 11 values: many ties
    ev = evaluators.build({"type": "average_precision", "score_key": "score"})
    scalars, extras = run(ev, batches({"score": score, "label": labels}, rng), ("score",))
    positive = labels == 1
    assert scalars["average_precision"] == pytest.approx(skm.average_precision_score(positive, score), abs=1e-12)
    expected = skm.precision_recall_curve(positive, score, drop_intermediate=True)
    for key, e in zip(("precision", "recall", "thresholds"), expected, strict=True):
        np.testing.assert_allclose(extras[key], e, rtol=0, atol=1e-12)
    (path,) = ev.plot(extras, tmp_path, "test")
    assert path.name == "precision_recall_test.png" and path.stat().st_size > 0


def test_average_precision_from_logits_and_macro_vs_sklearn():
    rng = np.random.default_rng(4)
    n, c = 203, 4
    labels = rng.integers(0, c, n).astype(np.int32)
    logits = (rng.normal(size=(n, c)) + np.eye(c)[labels]).astype(np.float32)
    data = batches({"logits": logits, "label": labels}, rng)
    probs = softmax(logits.astype(np.float64))
    ev = evaluators.build({"type": "average_precision", "positive_class": 2})
    scalars, _ = run(ev, data, ("logits",))
    assert scalars["average_precision"] == pytest.approx(
        skm.average_precision_score(labels == 2, probs[:, 2]), abs=1e-12
    )
    # Macro: one-vs-rest over classes; class 4 has no example, so NaN and left out of the mean.
    meta = types.SimpleNamespace(num_classes=c + 1, class_names=())
    macro = evaluators.build({"type": "average_precision", "average": "macro"}, meta)
    logits5 = np.concatenate([logits, rng.normal(size=(n, 1)).astype(np.float32)], 1)
    data5 = batches({"logits": logits5, "label": labels}, rng)
    scalars, extras = run(macro, data5, ("logits",))
    probs5 = softmax(logits5.astype(np.float64))
    per_class = [skm.average_precision_score(labels == k, probs5[:, k]) for k in range(c)]
    np.testing.assert_allclose(extras["per_class_average_precision"][:c], per_class, rtol=0, atol=1e-12)
    assert np.isnan(extras["per_class_average_precision"][c])
    assert scalars["average_precision"] == pytest.approx(np.mean(per_class), abs=1e-12)
    # Where every class is present this is sklearn's multiclass macro average.
    scalars4, _ = run(
        evaluators.build({"type": "average_precision", "average": "macro", "num_classes": c}), data, ("logits",)
    )
    assert scalars4["average_precision"] == pytest.approx(
        skm.average_precision_score(labels, probs, average="macro"), abs=1e-12
    )


def test_average_precision_without_positives_is_nan():
    assert np.isnan(ranking.average_precision(np.zeros(5, bool), np.arange(5.0)))
    assert np.isnan(ranking.average_precision(np.zeros(0, bool), np.zeros(0)))
    ev = evaluators.build({"type": "average_precision"})
    assert np.isnan(ev.result()[0]["average_precision"])


def test_registry_names_and_build():
    assert {"loss", "classification", "segmentation", "average_precision"} <= set(evaluators.names())
    assert evaluators.get("segmentation") is evaluators.SegmentationEvaluator
    meta = types.SimpleNamespace(num_classes=7, class_names=tuple("abcdefg"))
    cfg = ml_collections.ConfigDict({"type": "segmentation", "num_classes": 3, "exclude_from_mean": (0,)})
    ev = evaluators.build(cfg, meta)
    assert ev.num_classes == 3 and ev.exclude_from_mean == (0,)  # the config wins over the dataset
    assert ev.class_names == tuple("abcdefg")
    assert isinstance(evaluators.build({"type": "loss"}, meta), evaluators.LossEvaluator)  # takes no num_classes


def test_registry_errors_name_the_culprit():
    valid = "average_precision, classification, detection, disparity, flow, loss"
    with pytest.raises(ConfigError, match=rf"'nope'.*config\.evals.*{valid}"):
        evaluators.build({"type": "nope"})
    with pytest.raises(ConfigError, match=r"'classification'.*'labels_key'.*label_key"):
        evaluators.build({"type": "classification", "num_classes": 3, "labels_key": "y"})
    with pytest.raises(ConfigError, match=r"'classification'.*'num_classes'"):
        evaluators.build({"type": "classification"}, types.SimpleNamespace(num_classes=None, class_names=()))
    with pytest.raises(ConfigError, match=r"'segmentation'.*num_classes"):
        evaluators.build({"type": "segmentation", "num_classes": 0})
    with pytest.raises(ConfigError, match=r"'average_precision'.*average='micro'"):
        evaluators.build({"type": "average_precision", "average": "micro"})
    with pytest.raises(ConfigError, match="type"):
        evaluators.build({"num_classes": 3})


def _one_hot_confusion(labels, predictions, num_classes, weights):
    """The one-hot product that computed confusion matrices before the bincount."""
    true = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32) * weights[:, None]
    return true.T @ jax.nn.one_hot(predictions, num_classes, dtype=jnp.float32)


def test_bincount_confusion_matches_one_hot_product():
    rng = np.random.default_rng(5)
    c, n = 7, 1000
    labels = rng.integers(-1, c + 1, n)  # out-of-range labels are dropped by both
    predictions = rng.integers(0, c, n)
    mask = (rng.random(n) < 0.8).astype(np.float32)
    weights = rng.random(n).astype(np.float32)
    for w in (mask, weights):
        got = jax.jit(metrics.confusion_matrix, static_argnums=2)(labels, predictions, c, w)
        assert got.dtype == jnp.float32 and got.shape == (c, c)
        np.testing.assert_allclose(got, _one_hot_confusion(labels, predictions, c, w), rtol=1e-5)
    unweighted = metrics.confusion_matrix(labels, predictions, c)
    np.testing.assert_array_equal(unweighted, _one_hot_confusion(labels, predictions, c, np.ones(n, np.float32)))
    # Integer weights count exactly, in int32.
    counts = metrics.confusion_matrix(labels, predictions, c, mask.astype(np.int32))
    assert counts.dtype == jnp.int32
    np.testing.assert_array_equal(counts, _one_hot_confusion(labels, predictions, c, mask))

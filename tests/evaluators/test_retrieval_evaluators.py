"""The retrieval and verification evaluators run as the loop runs them: jitted ``batch_fn`` over batches whose last
one is padded with garbage rows of mask 0, ``fit`` after a pass over a fitting role, then later passes."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import sklearn.metrics as skm
from conftest import padded_batches

from mlcv import evaluators
from mlcv.config import ConfigError
from mlcv.evaluators import plots
from mlcv.metrics import retrieval as rt
from mlcv.metrics import verification as vf


def batches(arrays: dict[str, np.ndarray], rng: np.random.Generator, batch_size: int) -> list[dict[str, np.ndarray]]:
    """The split in padded batches (conftest.padded_batches)."""
    out = padded_batches(arrays, rng, batch_size)
    return out


def run(ev: evaluators.Evaluator, data: list[dict[str, np.ndarray]], fit: str | None = None):
    """One pass as the loop makes it (``fit``: the role to fit on before the results); returns ``ev.result()``."""
    step = jax.jit(ev.batch_fn)
    for batch in data:
        outputs = {"embedding": batch["embedding"]}
        ev.update(jax.device_get(step(outputs, {k: v for k, v in batch.items() if k != "embedding"})))
    if fit is not None:
        ev.fit(fit)
    scalars, extras = ev.result()
    ev.reset()
    assert set(scalars) == set(ev.directions) and ev.percent <= set(ev.directions)
    assert all(isinstance(v, float) for v in scalars.values())
    return scalars, extras


def whole(arrays: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The unpadded split as one batch."""
    return [{**arrays, "mask": np.ones(len(arrays["label"]), np.float32)}]


def _split(seed: int, n: int = 90, classes: int = 6, dim: int = 8, image: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n).astype(np.int32)
    emb = (rng.normal(size=(n, dim)) + 2.0 * np.eye(classes, dim)[labels]).astype(np.float32)
    out = {"embedding": emb, "label": labels}
    if image:
        out["image"] = rng.random((n, 20, 12, 3)).astype(np.float32)
    return out


def test_retrieval_evaluator_padding_and_values(tmp_path):
    arrays = _split(0)
    ev = evaluators.build({"type": "retrieval", "knn_k": 3, "draw_queries": 4, "projection_points": 50})
    assert isinstance(ev, evaluators.RetrievalEvaluator)
    padded, extras = run(ev, batches(arrays, np.random.default_rng(1), 16))
    unpadded, extras_whole = run(ev, whole(arrays))
    assert padded == unpadded and extras == extras_whole  # the padding never counts
    expected = rt.retrieval_metrics(arrays["embedding"], arrays["label"])
    expected["knn_accuracy"] = rt.knn_accuracy(arrays["embedding"], arrays["label"], 3)
    assert padded == pytest.approx(expected, abs=1e-12)
    assert list(padded) == [
        "recall_at_1",
        "recall_at_2",
        "recall_at_4",
        "recall_at_8",
        "map_at_r",
        "r_precision",
        "knn_accuracy",
    ]
    assert ev.percent == set(padded) and set(ev.directions.values()) == {"max"}

    assert len(extras["embedding_2d"]) == len(extras["embedding_2d_labels"]) == 50
    assert sum(extras["embedding_2d_variance"]) <= 1.0
    examples = extras["retrieval_examples"]
    assert len(examples) == 4
    for ex in examples:
        assert ex["query"] not in ex["neighbours"] and len(ex["neighbours"]) == 4
        assert ex["match"] == [arrays["label"][i] == ex["label"] for i in ex["neighbours"]]
        thumb = plots.png_image(ex["images_png"][0])
        assert thumb.shape[:2] == (20, 12)  # smaller than thumbnail_size: kept at full size
    paths = ev.plot(extras, tmp_path, "test")
    assert [p.name for p in paths] == ["embedding_2d_test.png", "retrieval_test.png"]
    assert all(p.stat().st_size > 0 for p in paths)


def test_thumbnails_and_pca():
    images = np.random.default_rng(0).random((2, 40, 24)).astype(np.float32)  # gray, no channel axis
    thumbs = np.asarray(evaluators.retrieval.thumbnails(images, 10))
    assert thumbs.shape == (2, 10, 6, 1) and thumbs.dtype == np.uint8
    assert thumbs.min() == 0 and thumbs.max() == 255  # min-max scaled per image
    from sklearn.decomposition import PCA

    emb = np.random.default_rng(1).normal(size=(30, 5)) * [5, 3, 1, 1, 1]
    xy, explained = evaluators.retrieval.pca_2d(emb)
    reference = PCA(2).fit(emb)
    np.testing.assert_allclose(np.abs(xy), np.abs(reference.transform(emb)), atol=1e-9)  # up to each axis's sign
    np.testing.assert_allclose(explained, reference.explained_variance_ratio_, atol=1e-12)


def test_retrieval_evaluator_without_images_draws_labels(tmp_path):
    arrays = _split(2, image=False)
    ev = evaluators.build({"type": "retrieval", "recall_ks": (1, 5), "thumbnail_size": 8})
    scalars, extras = run(ev, batches(arrays, np.random.default_rng(0), 32))
    assert {"recall_at_1", "recall_at_5"} <= set(scalars) and "recall_at_2" not in scalars
    assert "images_png" not in extras["retrieval_examples"][0]
    assert len(ev.plot(extras, tmp_path, "validation")) == 2


def test_identification_by_enrolment():
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(5), 4).astype(np.int32)
    rng.shuffle(labels)
    emb = (10 * np.eye(5, 6)[labels] + rng.normal(scale=0.2, size=(20, 6))).astype(np.float32)
    arrays = {"embedding": emb, "label": labels}
    ev = evaluators.build({"type": "retrieval", "enrol_per_class": 2})
    scalars, extras = run(ev, batches(arrays, rng, 8))
    assert scalars["identification_accuracy"] == 1.0 and ev.directions["identification_accuracy"] == "max"
    assert extras["identification_counts"] == {"gallery": 10, "probes": 10}
    # Four images per identity leave none to probe with four enrolled.
    too_many = evaluators.build({"type": "retrieval", "enrol_per_class": 4})
    with pytest.raises(ConfigError, match=r"config\.evals\.\*\.enrol_per_class of evaluator 'retrieval'=4"):
        run(too_many, batches(arrays, rng, 8))
    with pytest.raises(ConfigError, match="enrol_per_class"):
        evaluators.build({"type": "retrieval", "enrol_per_class": -1})


def _pairs_split(scale: float, positive_gaps: list[float]) -> dict[str, np.ndarray]:
    """Two items per identity: identity c at ``scale * e_c``, its second item ``positive_gaps[c]`` further along
    the last axis. Positive pairs lie at those gaps, negative ones at about ``scale * sqrt(2)``."""
    k = len(positive_gaps)
    emb = np.zeros((2 * k, k + 1), np.float32)
    for c, gap in enumerate(positive_gaps):
        emb[2 * c, c] = emb[2 * c + 1, c] = scale
        emb[2 * c + 1, k] = gap
    return {"embedding": emb, "label": np.repeat(np.arange(k), 2).astype(np.int32)}


def test_verification_threshold_fitted_on_validation_applies_to_the_next_pass(tmp_path):
    validation = _pairs_split(3.0, [1.0, 1.0, 1.0, 1.0])  # threshold between 1 and ~4.2
    test = _pairs_split(30.0, [1.0, 1.0, 5.0, 6.0])  # its own best: between 6 and ~42
    ev = evaluators.build({"type": "verification"})
    assert ev.fit_roles == ("validation",)
    rng = np.random.default_rng(0)
    own, extras = run(ev, batches(test, rng, 3))
    assert own["verification_accuracy"] == 1.0 and extras["threshold_from"] == "this split (optimistic)"
    assert 6.0 < own["threshold"] < 42.0
    fitted, extras = run(ev, batches(validation, rng, 3), fit="validation")
    assert 1.0 < ev.threshold < 4.3 and fitted["threshold"] == ev.threshold
    assert extras["threshold_from"] == "validation" and fitted["verification_accuracy"] == 1.0
    scalars, extras = run(ev, batches(test, rng, 3))
    assert scalars["threshold"] == ev.threshold and extras["threshold_from"] == "validation"
    assert scalars["verification_accuracy"] == 0.75  # the gaps of 5 and 6 are rejected now
    assert extras["threshold_tar"] == 0.5 and extras["threshold_far"] == 0.0
    assert scalars["roc_auc"] == 1.0 and scalars["tar_at_far_1e-2"] == 1.0
    (path,) = ev.plot(extras, tmp_path, "test")
    assert path.name == "roc_test.png" and path.stat().st_size > 0
    with pytest.raises(ValueError, match="train"):
        ev.fit("train")  # only deepface fits on train


def test_verification_padding_and_values_vs_sklearn():
    arrays = _split(4, n=120, image=False)
    for distance in ("euclidean", "cosine"):
        ev = evaluators.build({"type": "verification", "distance": distance, "max_pairs": 400, "pairs_seed": 3})
        padded, extras = run(ev, batches(arrays, np.random.default_rng(0), 32))
        assert (padded, extras) == run(ev, whole(arrays))
        pairs, same = vf.make_pairs(arrays["label"], 3, 400)
        a, b = arrays["embedding"][pairs[:, 0]].astype(np.float64), arrays["embedding"][pairs[:, 1]].astype(np.float64)
        if distance == "euclidean":
            d = np.linalg.norm(a - b, axis=1)
        else:
            d = 1 - np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert padded["roc_auc"] == pytest.approx(skm.roc_auc_score(same, -d), abs=1e-9)
        assert padded["verification_accuracy"] == pytest.approx(vf.best_threshold(d, same)[1], abs=1e-12)
        assert extras["verification_pairs"] == {"positive": 200, "negative": 200}
        assert len(extras["roc_far"]) == len(extras["roc_tar"]) == len(extras["roc_thresholds"]) <= 401
    with pytest.raises(ConfigError, match=r"'verification'.*distance='manhattan'.*euclidean, cosine, deepface"):
        evaluators.build({"type": "verification", "distance": "manhattan"})


def test_verification_roc_is_subsampled():
    arrays = _split(5, n=200, image=False)
    ev = evaluators.build({"type": "verification", "roc_points": 20, "max_pairs": None})
    _, extras = run(ev, whole(arrays))
    assert 2 < len(extras["roc_far"]) <= 20 and extras["roc_far"][-1] == 1.0 and extras["roc_tar"][0] == 0.0


def _deepface_split(seed: int, identities: int = 30, views: int = 4) -> dict[str, np.ndarray]:
    """Rectified features of 8 components: 0-1 carry the identity, 2-7 only noise (larger than the identity's)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(identities), views).astype(np.int32)
    identity = rng.random((identities, 2)) * 2
    features = np.concatenate(
        [identity[labels] + rng.normal(scale=0.05, size=(len(labels), 2)), 3 * rng.random((len(labels), 6))], 1
    )
    return {"embedding": np.maximum(features, 0).astype(np.float32), "label": labels}


def test_deepface_fits_weights_on_train_then_the_threshold_on_validation():
    ev = evaluators.build({"type": "verification", "distance": "deepface", "max_pairs": 2000})
    assert ev.fit_roles == ("train", "validation")
    rng = np.random.default_rng(0)
    test = batches(_deepface_split(2), rng, 32)
    unfitted, extras = run(ev, test)
    assert extras["deepface_fit"].startswith("none") and extras["deepface_alpha"] is None
    run(ev, batches(_deepface_split(0), rng, 32), fit="train")
    alpha = np.asarray(ev.alpha)
    assert alpha[:2].min() > 5 * alpha[2:].max()  # the identity's components weigh most
    assert ev.threshold is None
    run(ev, batches(_deepface_split(1), rng, 32), fit="validation")
    assert ev.threshold_from == "validation"
    scalars, extras = run(ev, test)
    assert extras["deepface_fit"] == "train" and extras["deepface_alpha"] == pytest.approx(alpha.tolist())
    assert extras["threshold_from"] == "validation"
    # Weighted, the noise components stop drowning the identity (unfitted: its own, optimistic, threshold).
    assert scalars["roc_auc"] > unfitted["roc_auc"] + 0.15
    assert scalars["verification_accuracy"] > unfitted["verification_accuracy"] + 0.15
    ev.fit("train")  # nothing accumulated since the reset: no pairs, so no weights
    assert ev.alpha is None and "alpha = 1" in ev.deepface_fit


def test_registered_and_default_hooks():
    assert {"retrieval", "verification"} <= set(evaluators.names())
    assert evaluators.get("verification") is evaluators.VerificationEvaluator
    loss = evaluators.build({"type": "loss"})
    assert loss.fit_roles == () and loss.fit("validation") is None

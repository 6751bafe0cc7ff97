"""Bag of visual words: VLAD and histograms by hand, the ridge classifier against scikit-learn, patches, runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.ndimage
from sklearn.linear_model import Ridge

import mlcv
from experiments import faces_bovw
from mlcv.classic.algorithms import descriptors, encodings
from mlcv.config import ConfigError

# Two codewords in 2-D, and two images of up to four descriptors; the mask hides padding rows.
CENTRES = np.array([[0.0, 0.0], [10.0, 0.0]])
DESC = np.array(
    [
        [[1.0, 2.0], [-1.0, 1.0], [12.0, 0.0], [100.0, 100.0]],  # the last is padding
        [[9.0, -1.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]],  # one real descriptor
    ]
)
MASK = np.array([[True, True, True, False], [True, False, False, False]])


def test_histogram_counts_nearest_codewords_by_hand():
    words = encodings.nearest_words(DESC, CENTRES)
    # (1, 2) and (-1, 1) are nearer (0, 0); (12, 0) and (9, -1) are nearer (10, 0).
    assert words[0, :3].tolist() == [0, 0, 1] and words[1, 0] == 1
    np.testing.assert_array_equal(encodings.histogram(words, MASK, 2), [[2, 1], [0, 1]])


def test_vlad_by_hand():
    # Image 0: residuals to (0, 0) sum to (1, 2) + (-1, 1) = (0, 3); to (10, 0), (12, 0) - (10, 0) = (2, 0).
    # Concatenated (0, 3, 2, 0); power 0.5 gives (0, sqrt 3, sqrt 2, 0), of L2 norm sqrt 5.
    # Image 1: codeword 0 gets nothing, (9, -1) - (10, 0) = (-1, -1): (0, 0, -1, -1) -> power (0, 0, -1, -1)
    # -> L2 (0, 0, -1/sqrt 2, -1/sqrt 2).
    v = encodings.vlad(DESC, MASK, CENTRES, alpha=0.5)
    np.testing.assert_allclose(v[0], [0, np.sqrt(3 / 5), np.sqrt(2 / 5), 0], rtol=1e-6)
    np.testing.assert_allclose(v[1], [0, 0, -np.sqrt(0.5), -np.sqrt(0.5)], rtol=1e-6)
    # alpha = 1 is plain L2 normalisation of (0, 3, 2, 0).
    np.testing.assert_allclose(encodings.vlad(DESC, MASK, CENTRES, alpha=1.0)[0], np.array([0, 3, 2, 0]) / np.sqrt(13))


def test_power_l2_keeps_signs_and_zero_rows():
    out = np.asarray(encodings.power_l2(np.array([[-4.0, 1.0], [0.0, 0.0]]), 0.5))
    np.testing.assert_allclose(out, [[-2 / np.sqrt(5), 1 / np.sqrt(5)], [0.0, 0.0]], rtol=1e-6)


@pytest.mark.parametrize("n,d", [(40, 5), (12, 30)])  # the primal and the dual solve
def test_ridge_equals_sklearn_ridge(n, d):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(n, d)), rng.integers(0, 3, n)
    w, b = encodings.fit_ridge(x, y, 2.5, 3)
    ref = Ridge(alpha=2.5).fit(x, 2.0 * np.eye(3)[y] - 1.0)
    np.testing.assert_allclose(w, ref.coef_.T, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(b, ref.intercept_, rtol=1e-6, atol=1e-9)


def test_patches_are_bilinear_samples():
    ramp = np.arange(25.0).reshape(1, 5, 5, 1)
    # A patch of side 2 around (2, 2), 3 x 3 samples: rows and columns 1, 2, 3 of the ramp.
    got = np.asarray(descriptors.sample_patches(ramp, np.array([[[2.0, 2.0, 2.0]]]), 3))
    np.testing.assert_array_equal(got[0, 0], [6, 7, 8, 11, 12, 13, 16, 17, 18])
    rng = np.random.default_rng(1)
    image = rng.random((1, 9, 11, 2)).astype(np.float32)
    points = np.c_[rng.uniform(0, 8, 5), rng.uniform(0, 10, 5), rng.uniform(2, 12, 5)].astype(np.float32)[None]
    got = np.asarray(descriptors.sample_patches(image, points, 4)).reshape(5, 4, 4, 2)
    offsets = np.linspace(-0.5, 0.5, 4)
    for i, (r, c, s) in enumerate(points[0]):
        rows, cols = np.meshgrid(r + s * offsets, c + s * offsets, indexing="ij")
        for ch in range(2):
            ref = scipy.ndimage.map_coordinates(image[0, ..., ch], [rows, cols], order=1, mode="nearest")
            np.testing.assert_allclose(got[i, ..., ch], ref, rtol=1e-5, atol=1e-5)


def test_sift_descriptors_are_scikit_images_padded():
    from skimage import data
    from skimage.feature import SIFT

    images = data.lfw_subset()[:6]
    desc, mask, points = descriptors.sift_descriptors(images[..., None], c_dog=0.004)
    assert desc.shape[0] == 6 and desc.shape[2] == 128 and desc.shape[1] == mask.sum(1).max()
    for i, image in enumerate(images):
        ref = SIFT(upsampling=2, c_dog=0.004)
        ref.detect_and_extract(image)
        assert mask[i].sum() == len(ref.descriptors)
        np.testing.assert_array_equal(desc[i, mask[i]], ref.descriptors)
        np.testing.assert_allclose(points[i, mask[i], :2], ref.positions, rtol=1e-6)
        assert not desc[i, ~mask[i]].any()


def test_grid_is_centred_and_scales_are_in_range():
    np.testing.assert_array_equal(np.unique(descriptors.grid_centres(25, 25, 5)[:, 0]), [2, 7, 12, 17, 22])
    import jax

    points = np.asarray(descriptors.grid_keypoints(jax.random.key(0), 3, 25, 25, 5, (4.0, 9.0)))
    assert points.shape == (3, 25, 3) and 4 <= points[..., 2].min() and points[..., 2].max() <= 9
    assert len(np.unique(points[..., 2])) == 75  # a size drawn per image and keypoint


def test_runlocal_end_to_end(tmp_path):
    config = faces_bovw.get_config("runlocal")
    summary = mlcv.run(config, tmp_path / "run")
    run = tmp_path / "run"
    for role in ("validation", "test"):
        assert set(summary[role]) == {"accuracy", "pixels/accuracy", "histogram/accuracy", "vlad/accuracy"}
        assert summary[role]["accuracy"] == summary[role]["vlad/accuracy"]
    # Face vs non-face from raw pixels is easy; the orderless encodings beat chance clearly even at 4 words.
    assert summary["test"]["pixels/accuracy"] > 0.85
    assert min(summary["test"]["histogram/accuracy"], summary["test"]["vlad/accuracy"]) > 0.6
    assert summary["headline"].startswith("test accuracy") and "histogram" in summary["headline"]
    records = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
    assert "kmeans/inertia" in records[0] and len(records) == 1 + 3 * 2
    plots = {p.name for p in (run / "plots").iterdir()}
    assert plots == {"bovw_keypoints.png", "bovw_codebook.png"}
    # The same seed gives the same numbers.
    assert mlcv.run(config, tmp_path / "again")["test"] == summary["test"]


@pytest.mark.parametrize(
    "key,value", [("encoding", "fisher"), ("vlad_alpha", 0.0), ("codebook_size", 100000), ("patch_sizes", (9.0, 4.0))]
)
def test_bad_config_is_an_error_before_anything_is_written(tmp_path, key, value):
    config = faces_bovw.get_config("runlocal")
    config.bovw[key] = value
    with pytest.raises(ConfigError, match=f"config.bovw.{key}"):
        mlcv.run(config, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def _ridge_select(features, labels, lambdas):
    """scikit-learn's Ridge on +-1 one-hot targets for each lambda, the first best on validation: (lambda, test
    accuracy). Labels are the raw class ids; a prediction is the training class of the largest score."""
    classes = np.unique(labels["train"])
    targets = 2.0 * (labels["train"][:, None] == classes) - 1.0
    best = None
    for lam in lambdas:
        ridge = Ridge(alpha=lam).fit(np.asarray(features["train"], np.float64), targets)
        acc = {r: np.mean(classes[ridge.predict(features[r]).argmax(1)] == labels[r]) for r in ("validation", "test")}
        if best is None or acc["validation"] > best[1]["validation"]:
            best = (lam, acc)
    return best[0], best[1]["test"]


def _vlad_numpy(images, keypoints, codebook, samples, eps, alpha):
    """Patch descriptors and VLAD in numpy/scipy: each keypoint's square read at samples x samples points by
    scipy's bilinear map_coordinates (edge repeated), channels side by side, minus its mean over (std + eps);
    per codeword the summed residuals of its nearest descriptors, then sign |v|^alpha and L2."""
    offsets = np.linspace(-0.5, 0.5, samples)
    out = []
    for image, points in zip(images.astype(np.float64), keypoints.astype(np.float64), strict=True):
        rows = points[:, 0, None, None] + points[:, 2, None, None] * offsets[None, :, None]
        cols = points[:, 1, None, None] + points[:, 2, None, None] * offsets[None, None, :]
        rows, cols = np.broadcast_arrays(rows, cols)
        patches = np.stack(
            [scipy.ndimage.map_coordinates(image[..., c], [rows, cols], order=1, mode="nearest") for c in range(3)], -1
        ).reshape(len(points), -1)
        centred = patches - patches.mean(1, keepdims=True)
        desc = centred / (centred.std(1, keepdims=True) + eps)
        words = ((desc[:, None] - codebook[None]) ** 2).sum(-1).argmin(1)
        v = np.stack([(desc[words == k] - codebook[k]).sum(0) for k in range(len(codebook))]).ravel()
        v = np.sign(v) * np.abs(v) ** alpha
        out.append(v / np.linalg.norm(v))
    return np.stack(out)


def test_colour_catalogue_dataset_on_mock_data(tmp_path):
    """``config.data.name`` takes a TFDS catalogue name; colour images give colour patches (and codewords).

    Expected values from outside the method: the pixels baseline recomputed from the raw mock arrays with
    scikit-learn's Ridge (lambda chosen on validation); the fitted method's training VLAD vectors recomputed in
    numpy/scipy from its saved keypoints and codebook, and its VLAD test accuracy from scikit-learn's Ridge on its
    VLAD vectors. ``load_arrays`` reads records one at a time: mock_data's sources have no ``__getitems__``.
    """
    import tensorflow_datasets as tfds

    config = faces_bovw.get_config("runlocal")
    config.data.name = "cifar10"
    roles = ("train", "validation", "test")
    with tfds.testing.mock_data(num_examples=30):
        summary = mlcv.run(config, tmp_path / "cifar")
        arrays = {r: mlcv.data.load_arrays("cifar10", r) for r in roles}
        method = mlcv.classic.get("bovw")(config)  # the same config and seed, fitted again to read its state
        method.fit(lambda step, scalars: None)
    assert method.evaluate("test") == summary["test"]
    assert summary["fit"]["pixels_dims"] == 32 * 32 * 3
    assert summary["fit"]["vlad_dims"] == config.bovw.codebook_size * config.bovw.patch_samples**2 * 3
    labels = {r: arrays[r]["label"] for r in roles}
    lambdas = config.bovw.ridge_lambdas
    pixels = {r: arrays[r]["image"].reshape(30, -1) / 255.0 for r in roles}
    assert _ridge_select(pixels, labels, lambdas) == (
        summary["fit"]["pixels_lambda"],
        summary["test"]["pixels/accuracy"],
    )
    b = config.bovw
    np.testing.assert_allclose(
        method.features["train"]["vlad"],
        _vlad_numpy(
            pixels["train"].reshape(30, 32, 32, 3),
            method.keypoints,
            np.asarray(method.codebook, np.float64),
            b.patch_samples,
            b.patch_contrast_eps,
            b.vlad_alpha,
        ),
        atol=1e-4,
    )
    vlad = {r: method.features[r]["vlad"] for r in roles}
    assert _ridge_select(vlad, labels, lambdas) == (summary["fit"]["vlad_lambda"], summary["test"]["vlad/accuracy"])

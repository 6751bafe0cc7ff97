"""The built-in open-set datasets of metric learning (digits_open_set, face_instances) and the class filter of split
strings on a prepared built-in dataset, its labels cache included."""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import pytest
from sklearn.datasets import load_digits

from mlcv import data
from mlcv.config import ConfigError
from mlcv.data import class_filter, pipeline
from mlcv.data.sources import instances

SIZES = {"train": 720, "validation": 181, "test": 896}


@pytest.fixture(scope="module")
def digits_splits():
    return {role: data.load_arrays("digits_open_set", role) for role in SIZES}


@pytest.fixture(scope="module")
def face_splits():
    return {role: data.load_arrays("face_instances", role) for role in ("train", "validation", "test")}


def test_digits_open_set_classes_and_sizes(digits_splits):
    """Train and validation hold digits 0-4 (80 / 20 % of each digit's images), test every image of digits 5-9, with
    their digit values as labels."""
    reference = np.bincount(load_digits().target)
    for role, n in SIZES.items():
        split = digits_splits[role]
        assert split["image"].shape == (n, 8, 8, 1) and split["image"].dtype == np.uint8
        assert split["image"].max() <= 16
        assert set(np.unique(split["label"])) == ({0, 1, 2, 3, 4} if role != "test" else {5, 6, 7, 8, 9})
    train, val = (np.bincount(digits_splits[r]["label"], minlength=10) for r in ("train", "validation"))
    np.testing.assert_array_equal(train + val, np.r_[reference[:5], np.zeros(5, int)])
    assert (np.abs(val - 0.2 * reference * (np.arange(10) < 5)) <= 1).all()  # stratified
    np.testing.assert_array_equal(np.bincount(digits_splits["test"]["label"], minlength=10)[5:], reference[5:])


def test_digits_open_set_holds_scikit_learn_images_once(digits_splits):
    """The three splits together are scikit-learn's 1,797 images, each once (as multisets of pixels and labels)."""
    ref = load_digits()
    want = sorted((im.astype(np.uint8).tobytes(), int(y)) for im, y in zip(ref.images, ref.target, strict=True))
    got = sorted(
        (im[..., 0].tobytes(), int(y))
        for s in digits_splits.values()
        for im, y in zip(s["image"], s["label"], strict=True)
    )
    assert got == want


def test_digits_open_set_normalizes_with_its_train_statistics(digits_splits):
    """op_defaults hold the float64 mean and std of the train split's pixels (to the 4 digits written)."""
    x = digits_splits["train"]["image"].astype(np.float64)
    stats = data.get("digits_open_set").op_defaults["normalize"]
    assert stats["mean"] == pytest.approx(x.mean(), abs=1e-4) and stats["std"] == pytest.approx(x.std(), abs=1e-4)


def test_face_instances_identities_and_views(face_splits):
    """40 / 10 / 50 faces of 8 views each, labelled by face index 0-39 / 40-49 / 50-99; the stored pixels are the
    generator's, which gives the same views every time."""
    views = instances.face_views()
    np.testing.assert_array_equal(views, instances.face_views())
    assert views.shape == (100, 8, 25, 25) and views.dtype == np.uint8
    for role, (first, last) in (("train", (0, 40)), ("validation", (40, 50)), ("test", (50, 100))):
        split = face_splits[role]
        assert split["image"].shape == ((last - first) * 8, 25, 25, 1)
        np.testing.assert_array_equal(np.bincount(split["label"], minlength=100)[first:last], 8)
        assert set(np.unique(split["label"])) == set(range(first, last))
        for image, label in zip(split["image"][..., 0], split["label"], strict=True):
            assert (views[label] == image).all(axis=(1, 2)).any()


def _z(x: np.ndarray) -> np.ndarray:
    x = x.reshape(*x.shape[:-2], -1).astype(np.float64)
    x = x - x.mean(-1, keepdims=True)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_face_views_differ_but_stay_correlated_with_their_face():
    """No view equals its face or another view of it; a view correlates (Pearson, over pixels, the mirrored face
    too as views may be mirrored) more with its own face than with the others on average, and finds its own face as
    the best match far above chance (1 %)."""
    views, faces = instances.face_views(), instances.faces()
    assert not (views == faces[:, None]).all(axis=(2, 3)).any()
    for face in views:
        assert len({v.tobytes() for v in face}) == 8
    zv = _z(views)
    corr = np.maximum(np.einsum("fvp,gp->fvg", zv, _z(faces)), np.einsum("fvp,gp->fvg", zv, _z(faces[:, :, ::-1])))
    own = corr[np.arange(100), :, np.arange(100)]  # [face, view]
    others = (corr.sum(-1) - own) / 99
    assert own.mean() > 0.6 and others.mean() < 0.4
    assert (own > others).mean() > 0.95
    assert (corr.argmax(-1) == np.arange(100)[:, None]).mean() > 0.6


@pytest.mark.parametrize("name,classes", [("digits_open_set", 10), ("face_instances", 100)])
def test_meta_needs_no_data(name, classes, tmp_path):
    meta = data.meta(data.get(name), data_dir=str(tmp_path))
    assert meta.num_classes == classes and len(meta.class_names) == classes
    assert not list(tmp_path.iterdir())


def test_class_filter_on_a_prepared_dataset_and_its_labels_cache():
    """digits' two TFDS splits parted by class and 80 / 20 within each class: disjoint, complete, class-stratified;
    the labels are cached beside the ArrayRecord files and read back from there."""
    spec = data.get("digits")
    full = data.source(spec, "train+test")
    labels = np.array([int(full[i]["label"]) for i in range(len(full))])
    seen = data.source(spec, "train+test|classes=0:5|images=:80%")
    held = data.source(spec, "train+test|classes=0:5|images=80%:")
    unseen = data.source(spec, "train+test|classes=50%:")
    assert isinstance(seen, class_filter.ClassFilteredSource)
    assert set(seen.labels) == set(held.labels) == {0, 1, 2, 3, 4} and set(unseen.labels) == {5, 6, 7, 8, 9}
    assert not set(seen.indices) & set(held.indices)
    np.testing.assert_array_equal(np.sort(np.r_[seen.indices, held.indices]), np.flatnonzero(labels < 5))
    np.testing.assert_array_equal(unseen.indices, np.flatnonzero(labels >= 5))
    counts = np.bincount(labels)[:5]
    np.testing.assert_array_equal(np.bincount(held.labels), counts - np.floor(counts * 0.8 + 0.5).astype(int))
    for i in (0, 17, len(held) - 1):  # records are the wrapped source's, in record order
        record = held[i]
        np.testing.assert_array_equal(record["image"], full[int(held.indices[i])]["image"])
        assert int(record["label"]) == held.labels[i]
    np.testing.assert_array_equal(pipeline.split_labels(held), held.labels)
    (cache,) = glob.glob(os.path.join(full.dataset_info.data_dir, "mlcv-labels-*.json"))
    np.testing.assert_array_equal(class_filter.read_labels(full), labels)
    with open(cache) as f:
        cached = json.load(f)
    assert cached["split"] == "train+test" and cached["num_records"] == len(full)
    cached["labels"][0] = int(labels[0] + 1) % 10  # a cache that disagreed with the records would show through
    with open(cache, "w") as f:
        json.dump(cached, f)
    assert class_filter.read_labels(full)[0] == (labels[0] + 1) % 10
    os.remove(cache)


@pytest.mark.parametrize(
    "split,match",
    [
        ("train|classes=0-5", "not a range"),
        ("train|classes=a:5", "not a class id"),
        ("train|images=10:90", "not a percentage"),
        ("train|images=:120%", "not a percentage"),
        ("train|min_images=two", "not a count"),
        ("train|keep=3", "not an option"),
        ("train|classes=0:5|classes=5:", "twice"),
        ("|classes=0:5", "no TFDS split"),
    ],
)
def test_bad_split_options_name_the_config_keys(split, match):
    with pytest.raises(ConfigError, match=f"config.data.train_split.*{match}"):
        data.source(data.get("digits"), split)

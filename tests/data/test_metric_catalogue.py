"""The TFDS catalogue datasets of metric learning (CUB-200-2011, Cars196, LFW) with their open-set class splits, on
tfds.testing.mock_data: the class filter per role, LFW's names as ids, and records through pp strings to batches.

mock_data draws every record's label at random (uniform over a ClassLabel's classes; a random string for LFW's Text
name, so that every mock person has one image); a test of names shared between images gives its own source.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_datasets as tfds

from mlcv import data
from mlcv.data import class_filter, pipeline

KEYS = ("image", "label")
TRAIN_PP = "random_resized_crop(32)|flip_lr|normalize"
EVAL_PP = "resize_short(40)|center_crop(32)|normalize"
# name -> (num_classes, first test class)
CLASS_SPLITS = {"caltech_birds2011": (200, 100), "cars196": (196, 98)}


def _sources(name: str) -> tuple[data.DatasetSpec, dict, np.ndarray]:
    """The spec, the source of each role, and the labels of the whole ``train+test``, under the current mock."""
    spec = data.get(name)
    sources = {role: data.source(spec, spec.splits[role]) for role in data.ROLES}
    full = data.source(spec, "train+test")
    return spec, sources, np.array([int(full[i]["label"]) for i in range(len(full))])


@pytest.mark.parametrize("name", sorted(CLASS_SPLITS))
def test_class_splits_per_role(name):
    """Train and validation hold the training classes (9 : 1 of each class's images, disjoint, together all of
    them), test every image of the other classes; each record carries the label its role was chosen by."""
    num_classes, first_test = CLASS_SPLITS[name]
    with tfds.testing.mock_data(num_examples=1500):
        spec, sources, labels = _sources(name)
        meta = data.meta(spec, sources["train"])
        for role, src in sources.items():
            assert isinstance(src, class_filter.ClassFilteredSource)
            for i in range(0, len(src), 97):
                assert int(src[i]["label"]) == src.labels[i], (role, i)
    assert meta.num_classes == num_classes and set(meta.features) == {"image", "label"}
    assert meta.image_shape == (None, None, 3)
    train, val, test = (sources[r] for r in data.ROLES)
    assert train.labels.max() < first_test and val.labels.max() < first_test and test.labels.min() >= first_test
    assert not set(train.indices) & set(val.indices)
    np.testing.assert_array_equal(np.sort(np.r_[train.indices, val.indices]), np.flatnonzero(labels < first_test))
    np.testing.assert_array_equal(test.indices, np.flatnonzero(labels >= first_test))
    counts = np.bincount(labels, minlength=num_classes)[:first_test]
    np.testing.assert_array_equal(
        np.bincount(val.labels, minlength=first_test), counts - np.floor(counts * 0.9 + 0.5).astype(int)
    )
    assert 0.05 < len(val) / (len(train) + len(val)) < 0.15


def test_specs_and_meta_need_no_records():
    """Each spec splits by class and normalizes with ImageNet's statistics; LFW's meta declares its 5,749 people."""
    assert data.get("caltech_birds2011").splits["test"] == "train+test|classes=100:200"
    assert data.get("cars196:2.1.0").splits["train"] == "train+test|classes=0:98|images=:90%"
    assert data.get("lfw").splits["test"] == "train|classes=50%:"
    for name in ("caltech_birds2011", "cars196", "lfw"):
        assert data.get(name).op_defaults["normalize"]["mean"] == (123.675, 116.28, 103.53)
    with tfds.testing.mock_data(num_examples=2):
        meta = data.meta(data.get("lfw"))
    assert meta.num_classes == 5749 and meta.image_shape == (250, 250, 3)
    assert meta.features["label"] == data.Feature("label", (), "int64", num_classes=5749)


def test_lfw_mock_names_become_ids_and_halves():
    """Every mock name is another person: ids are the ranks of the sorted names, the first half trains and the
    second half tests; with one image a person, validation (a tenth of each person's images) is empty."""
    with tfds.testing.mock_data(num_examples=12):
        spec = data.get("lfw")
        raw = tfds.data_source("lfw", split="train")
        names = [str(raw[i]["label"]) for i in range(len(raw))]
        sources = {role: data.source(spec, spec.splits[role]) for role in data.ROLES}
        whole = data.source(spec, "train")
        record = sources["test"][0]
    ranks = np.argsort(np.argsort(names))
    np.testing.assert_array_equal(whole.labels, ranks)
    assert whole.class_names == tuple(sorted(names))
    assert sources["train"].labels.tolist() == [r for r in ranks if r < 6]
    assert sources["test"].labels.tolist() == [r for r in ranks if r >= 6] and len(sources["validation"]) == 0
    assert record["label"].dtype == np.int64 and record["label"] == sources["test"].labels[0]


NAMES = ["Zoe", "Al", "Bo", "Al", "Zoe", "Cy", "Al", "Di", "Bo", "Al", "Al", "Al", "Al", "Al"]


class _NamedFaces:
    """A stand-in for TFDS lfw with names shared between images (byte strings, as TFDS decodes a Text feature)."""

    def __init__(self, info):
        self.dataset_info = info

    def __len__(self) -> int:
        return len(NAMES)

    def __getitem__(self, i: int) -> dict:
        return {"image": np.full((250, 250, 3), i, np.uint8), "label": NAMES[i].encode()}


def test_lfw_shared_names_map_to_one_id():
    """Al Bo Cy Di Zoe are ids 0..4; the first half (3 of 5 names, rounded up) trains, Al's 10th image validates."""
    with tfds.testing.mock_data(as_data_source_fn=lambda builder, split, **kw: _NamedFaces(builder.info)):
        spec = data.get("lfw")
        train, val, test = (data.source(spec, spec.splits[role]) for role in data.ROLES)
        whole = data.source(spec, "train")
    ids = {"Al": 0, "Bo": 1, "Cy": 2, "Di": 3, "Zoe": 4}
    np.testing.assert_array_equal(whole.labels, [ids[n] for n in NAMES])
    assert whole.class_names == tuple(ids)
    al = [i for i, n in enumerate(NAMES) if n == "Al"]  # 8 images: 90 % is 7.2, so 7 train and 1 validates
    assert val.indices.tolist() == al[7:] and val[0]["label"] == 0
    assert sorted(train.indices.tolist() + al[7:]) == [i for i, n in enumerate(NAMES) if ids[n] < 3]
    assert test.indices.tolist() == [i for i, n in enumerate(NAMES) if ids[n] >= 3]
    np.testing.assert_array_equal(test[1]["image"], whole[test.indices[1]]["image"])


@pytest.mark.parametrize("name", ["caltech_birds2011", "cars196", "lfw"])
def test_records_through_pp_strings_to_fixed_shape_batches(name):
    """Variable-size mock images become float [B, 32, 32, 3] batches with int labels, training and evaluation."""
    with tfds.testing.mock_data(num_examples=20):
        spec = data.get(name)
        train, test = data.source(spec, spec.splits["train"]), data.source(spec, spec.splits["test"])
        kw = {"op_defaults": spec.op_defaults, "keys": KEYS}
        batch = next(iter(pipeline.train_loader(train, batch_size=4, pp=TRAIN_PP, seed=0, **kw)))
        evals = list(pipeline.eval_batches(test, batch_size=8, pp=EVAL_PP, **kw))
    assert batch["image"].shape == (4, 32, 32, 3) and batch["image"].dtype == np.float32
    assert batch["label"].shape == (4,) and np.issubdtype(batch["label"].dtype, np.integer)
    assert sum(b["mask"].sum() for b in evals) == len(test)
    assert all(b["image"].shape == (8, 32, 32, 3) for b in evals)
    labels = np.concatenate([b["label"][b["mask"] > 0] for b in evals])
    np.testing.assert_array_equal(labels, test.labels)


def test_p_by_k_batches_of_cub_with_min_images():
    """``min_images=4`` keeps the training classes with 4 or more images, from which 4 x 4 batches are drawn."""
    with tfds.testing.mock_data(num_examples=1500):
        spec = data.get("caltech_birds2011")
        src = data.source(spec, "train+test|classes=0:100|min_images=4")
        loader = pipeline.train_loader(
            src, batch_size=20, pp=TRAIN_PP, op_defaults=spec.op_defaults, keys=KEYS, seed=0, identities=(4, 4)
        )
        it = iter(loader)
        batches = [next(it) for _ in range(3)]
    assert np.bincount(src.labels).max() >= 4 and np.bincount(src.labels)[np.unique(src.labels)].min() >= 4
    for batch in batches:
        assert batch["image"].shape == (20, 32, 32, 3)
        blocks = batch["label"][:16].reshape(4, 4)
        assert (blocks == blocks[:, :1]).all() and len(set(blocks[:, 0])) == 4
        assert not set(blocks[:, 0]) & set(batch["label"][16:]) and batch["label"].max() < 100

"""Tests of the built-in digits dataset through mlcv.data: sizes, contents, splits, and no TensorFlow import."""

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from mlcv import data
from mlcv.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def spec():
    return data.get("digits")


@pytest.fixture(scope="module")
def splits(spec):
    """Records of the full train split, the test split and the validation slice, as lists of dicts."""
    out = {}
    for name, split in (("train", "train"), ("test", "test"), ("validation", spec.splits["validation"])):
        src = data.source(spec, split)
        out[name] = [src[i] for i in range(len(src))]
    return out


@pytest.fixture(scope="module")
def sk_digits():
    d = load_digits()
    return d.images.astype(np.uint8)[..., None], d.target


def _key(image, label):
    return (np.asarray(image).tobytes(), int(label))


def _counter(records):
    return collections.Counter(_key(r["image"], r["label"]) for r in records)


def test_spec(spec):
    """digits is built in, with the validation slice carved out of train."""
    assert spec.builtin
    assert spec.name == "digits"
    assert spec.splits == {"train": "train[:1257]", "validation": "train[1257:]", "test": "test"}
    assert "digits" in data.builtin_names()


def test_split_sizes(spec):
    """train 1437, test 360, validation 180 and the training slice 1257 records (1437 - 180)."""
    assert len(data.source(spec, "train")) == 1437
    assert len(data.source(spec, "test")) == 360
    assert len(data.source(spec, spec.splits["validation"])) == 180
    assert len(data.source(spec, spec.splits["train"])) == 1257
    assert len(data.source(spec, spec.splits["test"])) == 360


def test_record_format(splits):
    """Each record is a uint8 (8, 8, 1) image with values 0..16 and an int label 0..9."""
    r = splits["train"][0]
    assert r["image"].shape == (8, 8, 1)
    assert r["image"].dtype == np.uint8
    images = np.stack([r["image"] for r in splits["train"]])
    assert images.min() == 0 and images.max() == 16
    assert {int(r["label"]) for r in splits["train"]} == set(range(10))


def test_train_plus_test_equals_sklearn(splits, sk_digits):
    """The multiset of (image bytes, label) over train + test equals scikit-learn's load_digits."""
    images, labels = sk_digits
    expected = collections.Counter(_key(images[i], labels[i]) for i in range(len(labels)))
    assert len(expected) == 1797
    assert _counter(splits["train"]) + _counter(splits["test"]) == expected


def test_test_split_is_stratified(splits, sk_digits):
    """Per-class counts of test equal those of sklearn's stratified split with test_size=360, random_state=0."""
    images, labels = sk_digits
    _, y_test = train_test_split(labels, test_size=360, stratify=labels, random_state=0)
    expected = np.bincount(y_test, minlength=10)
    got = np.bincount([int(r["label"]) for r in splits["test"]], minlength=10)
    np.testing.assert_array_equal(got, expected)
    # Stratified: each class's share of the test set is within one record of its share of the data.
    assert np.all(np.abs(got - np.bincount(labels) * 360 / 1797) <= 1)


def test_test_split_is_sklearns_test_split(splits, sk_digits):
    """The test records are exactly sklearn's stratified test indices (random_state=0)."""
    images, labels = sk_digits
    _, test_idx = train_test_split(np.arange(len(labels)), test_size=360, stratify=labels, random_state=0)
    expected = collections.Counter(_key(images[i], labels[i]) for i in test_idx)
    assert _counter(splits["test"]) == expected


def test_validation_is_disjoint_from_test_and_inside_train(splits):
    """Validation records are train records, none of them in test, and the train slice does not overlap them."""
    val = set(_counter(splits["validation"]))
    assert len(val) == 180
    assert not val & set(_counter(splits["test"]))
    assert val <= set(_counter(splits["train"]))
    assert not val & set(_counter(splits["train"][:1257]))


def test_num_classes(spec):
    """The label feature has 10 classes."""
    assert data.num_classes(data.source(spec, "test")) == 10


@pytest.mark.parametrize("fresh_dir", [False, True], ids=["prepared", "fresh"])
def test_reading_records_does_not_import_tensorflow(splits, fresh_dir, tmp_path):
    """Reading digits (already prepared, or prepared first in an empty data dir) never imports tensorflow."""
    code = (
        "import json, sys\n"
        "from mlcv import data\n"
        "spec = data.get('digits')\n"
        "src = data.source(spec, spec.splits['train'])\n"
        "r = src[0]; r = src[len(src) - 1]\n"
        "print(json.dumps([len(src), sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow')]))\n"
    )
    env = dict(os.environ)
    if fresh_dir:
        env["TFDS_DATA_DIR"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    n, tf_modules = json.loads(proc.stdout.strip().splitlines()[-1])
    assert n == 1257
    assert tf_modules == []
    if fresh_dir:
        assert (tmp_path / "digits").is_dir()


def test_unknown_dataset_raises_config_error():
    """An unknown dataset name raises ConfigError naming it."""
    with pytest.raises(ConfigError, match="'no_such_dataset_xyz'"):
        data.get("no_such_dataset_xyz")


def test_catalogue_dataset_spec():
    """Catalogue names give non-built-in specs with a 90/10 train/validation split; known datasets carry the
    published pixel statistics (MNIST 0.1307 / 0.3081 of 255), others map uint8 to [-1, 1]."""
    spec = data.get("mnist")
    assert not spec.builtin
    assert spec.splits == {"train": "train[:90%]", "validation": "train[90%:]", "test": "test"}
    assert spec.op_defaults["normalize"]["mean"] == pytest.approx(0.1307 * 255, abs=0.01)
    assert spec.op_defaults["normalize"]["std"] == pytest.approx(0.3081 * 255, abs=0.01)
    pinned = data.get("mnist:3.0.1")
    assert pinned.name == "mnist:3.0.1" and pinned.op_defaults == spec.op_defaults
    other = data.get("kmnist")
    assert other.splits == spec.splits and other.op_defaults == {"normalize": {"mean": 127.5, "std": 127.5}}

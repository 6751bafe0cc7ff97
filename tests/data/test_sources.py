"""The built-in datasets' declared features and meta, the bodies and stereo datasets' records, and catalogue meta."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import tensorflow_datasets as tfds

from experiments import bodies_forest
from mlcv import data
from mlcv.classic.methods.depth_forest import DepthForest
from mlcv.config import ConfigError
from mlcv.data.features import from_features, from_tfds
from mlcv.data.sources import bodies, stereo, stereo_builders

# name -> (num_classes, class_names, image_shape)
EXPECTED_META = {
    "digits": (10, tuple("0123456789"), (8, 8, 1)),
    "faces": (2, ("non_face", "face"), (25, 25, 1)),
    "circles": (2, ("outer", "inner"), (2,)),
    "bodies": (11, bodies.PART_NAMES, (64, 64, 1)),
    "random_dot_stereo": (None, (), (64, 96, 1)),
    "motorcycle": (None, (), (500, 741, 1)),
    "digit_scenes": (11, ("background", *"0123456789"), (96, 96, 3)),
    "digit_scenes_single": (11, ("background", *"0123456789"), (64, 64, 3)),
    "digits_open_set": (10, tuple("0123456789"), (8, 8, 1)),
    "face_instances": (100, tuple(str(i) for i in range(100)), (25, 25, 1)),
    "stereo_planes": (None, (), (64, 128, 1)),
    "flow_layers": (None, (), (64, 96, 1)),
}


def test_every_builtin_is_covered():
    assert sorted(EXPECTED_META) == data.builtin_names()


@pytest.mark.parametrize("name", sorted(EXPECTED_META))
def test_builtin_meta_needs_no_data(name, tmp_path):
    """meta() of a built-in comes from its declared features: right classes and shapes, nothing prepared."""
    meta = data.meta(data.get(name), data_dir=str(tmp_path))
    assert (meta.num_classes, meta.class_names, meta.image_shape) == EXPECTED_META[name]
    assert meta.features == data.get(name).features
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", sorted(EXPECTED_META))
def test_declared_features_match_the_stored_records(name):
    """Every declared feature is a TFDS feature of the builder with the same shape and dtype, and a record's
    arrays have them; declared classes agree with a ClassLabel where the builder has one."""
    spec = data.get(name)
    src = data.source(spec, spec.splits["test"])
    stored = from_tfds(src.dataset_info.features)
    assert set(stored) == set(spec.features)
    record = src[0]
    for key, f in spec.features.items():
        assert (stored[key].shape, stored[key].dtype) == (f.shape, f.dtype), key
        assert stored[key].num_classes in (None, f.num_classes), key
        assert stored[key].class_names in (None, f.class_names), key
        value = np.asarray(record[key])
        assert value.dtype.name == f.dtype and len(value.shape) == len(f.shape), key
        assert all(d in (None, v) for d, v in zip(f.shape, value.shape, strict=True)), key  # None: varies


def test_meta_of_a_catalogue_dataset_from_mock_data():
    """Without declared features, meta() reads the TFDS dataset_info: ClassLabel -> classes, Image -> shape."""
    spec = data.get("cifar10")
    assert not spec.features
    with tfds.testing.mock_data(num_examples=4):
        meta = data.meta(spec)
        from_source = data.meta(spec, data.source(spec, spec.splits["test"]))
        mnist = data.meta(data.get("mnist"))
    assert meta == from_source
    # Mock data has no dataset_info.json, so its ClassLabel names are "0".."9"; the real one names them.
    assert meta.num_classes == 10 and len(meta.class_names) == 10
    assert meta.image_shape == (32, 32, 3)
    assert (meta.features["image"].kind, meta.features["image"].dtype) == ("image", "uint8")
    assert meta.features["label"].kind == "label"
    assert meta.features["id"] == data.Feature("identity", (), "object")  # cifar10's example ids: text
    assert (mnist.num_classes, mnist.class_names, mnist.image_shape) == (10, tuple("0123456789"), (28, 28, 1))


def test_features_of_nested_tfds_features():
    """Detection-style TFDS features: a Sequence's bbox and label become boxes and box_labels with a leading None."""
    features = tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(shape=(None, None, 3)),
            "objects": tfds.features.Sequence(
                {"bbox": tfds.features.BBoxFeature(), "label": tfds.features.ClassLabel(names=["cat", "dog"])}
            ),
        }
    )
    got = from_tfds(features)
    assert got["image"] == data.Feature("image", (None, None, 3), "uint8")
    assert got["objects/bbox"] == data.Feature("boxes", (None, 4), "float32")
    assert got["objects/label"] == data.Feature("box_labels", (None,), "int64", 2, ("cat", "dog"))
    meta = from_features(got)
    assert (meta.num_classes, meta.image_shape) == (None, (None, None, 3))


def test_feature_checks_its_kind_and_classes():
    assert data.Feature("label", (), "int64", class_names=("a", "b")).num_classes == 2
    with pytest.raises(ValueError, match="kind"):
        data.Feature("picture", (8, 8, 1), "uint8")
    with pytest.raises(ValueError, match="class_names"):
        data.Feature("label", (), "int64", num_classes=3, class_names=("a", "b"))


def test_bodies_records_are_the_forest_images():
    """The registered bodies splits hold, record by record, the images DepthForest draws for
    experiments/bodies_forest.py (seed 0); the validation split also by the recipe written out here."""
    config = bodies_forest.get_config()
    assert config.seed == 0 and config.data.image_size == 64
    forest = DepthForest(config)
    for role in data.ROLES:
        arrays = data.load_arrays("bodies", role)
        np.testing.assert_array_equal(arrays["image"][..., 0], forest.data[role]["depth"], err_msg=role)
        np.testing.assert_array_equal(arrays["segmentation"], forest.data[role]["label"], err_msg=role)
    # DepthForest.__init__: one SeedSequence child per role, train / validation / test, in that order.
    seed = int(np.random.SeedSequence(0).spawn(4)[1].generate_state(1)[0])
    validation = data.load_arrays("bodies", "validation")["image"][..., 0]
    np.testing.assert_array_equal(validation, bodies.generate(seed, 50)["depth"])


def _warp(image: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (N, H, W) sampled at ``(y, x + shift)`` by linear interpolation, and where that lies inside."""
    width = image.shape[-1]
    x = np.arange(width) + shift
    inside = (x >= 0) & (x <= width - 1)
    x = np.clip(x, 0, width - 1)
    i0 = np.minimum(np.floor(x).astype(int), width - 2)
    frac = x - i0
    out = (1 - frac) * np.take_along_axis(image, i0, -1) + frac * np.take_along_axis(image, i0 + 1, -1)
    return out, inside


def test_random_dot_stereo_records_satisfy_their_disparities():
    """Warping the other view by each view's disparity gives back that view on its unmasked pixels (up to noise),
    and the two disparities agree where a pixel's match is visible: a left-right flip can swap them."""
    spec = data.get("random_dot_stereo")
    sizes = {role: len(data.source(spec, spec.splits[role])) for role in data.ROLES}
    assert sizes == {"train": 200, "validation": 20, "test": 50}
    a = data.load_arrays("random_dot_stereo", "test")
    left, right = a["image"][..., 0].astype(float), a["image_right"][..., 0].astype(float)
    unwarped = np.abs(left - right).mean()
    for view, other, disparity, mask in (
        (left, right, -a["disparity"], a["disparity_mask"]),  # left (y, x) matches right (y, x - d)
        (right, left, a["disparity_right"], a["disparity_right_mask"]),  # right (y, x) matches left (y, x + d)
    ):
        warped, inside = _warp(other, disparity)
        error = np.abs(warped - view)
        assert mask.mean() > 0.8
        assert error[mask & inside].mean() < min(6.0, 0.2 * unwarped)  # noise std 2 in each view, uint8
        assert error[~mask].mean() > 5 * error[mask & inside].mean()  # masked pixels see another surface
    n, h, w = a["disparity"].shape
    ys, xs = np.mgrid[0:h, 0:w]
    target = np.clip(np.round(xs - a["disparity"]).astype(int), 0, w - 1)
    back = np.take_along_axis(a["disparity_right"], np.broadcast_to(target, (n, h, w)), -1)
    np.testing.assert_array_equal(back[a["disparity_mask"]], a["disparity"][a["disparity_mask"]])
    # Record i of a split is the generator's pair of seed SEED_BASE[split] + i.
    pair = stereo.synthetic_pair(stereo_builders.SEED_BASE["test"] + 7, 64, 96, **stereo_builders.PAIR_ARGS)
    np.testing.assert_array_equal(a["disparity"][7], pair["disparity"])
    np.testing.assert_array_equal(a["image_right"][7, ..., 0], np.clip(np.round(pair["right"]), 0, 255))


def test_motorcycle_is_one_test_record():
    """Only a test split; the disparity is scikit-image's ground truth, 0 and masked out where it has none."""
    spec = data.get("motorcycle")
    assert dict(spec.splits) == {"test": "test"}
    for role in ("train", "validation"):
        with pytest.raises(ConfigError, match=f"'motorcycle' has no '{role}' split"):
            data.load_arrays("motorcycle", role)
    a = data.load_arrays("motorcycle", "test")
    assert len(a["image"]) == 1
    truth = stereo.motorcycle()["disparity"]
    mask = a["disparity_mask"][0]
    np.testing.assert_array_equal(mask, np.isfinite(truth))
    np.testing.assert_array_equal(a["disparity"][0][mask], truth[mask])
    assert not a["disparity"][0][~mask].any()
    left, right = a["image"][..., 0].astype(float), a["image_right"][..., 0].astype(float)
    warped, inside = _warp(right, -a["disparity"])
    assert np.abs(warped - left)[a["disparity_mask"] & inside].mean() < 0.3 * np.abs(left - right).mean()


def test_splits_raise_config_error_and_pickle():
    """A missing role raises ConfigError naming dataset and role; splits survive pickling with that behaviour."""
    splits = pickle.loads(pickle.dumps(data.get("motorcycle").splits))
    assert splits == {"test": "test"} and splits.get("train") is None
    with pytest.raises(ConfigError, match="'motorcycle' has no 'train' split"):
        splits["train"]
    assert data.get("mnist:3.0.1").splits["train"] == "train[:90%]"


def test_a_second_process_waits_for_the_first_to_prepare(tmp_path):
    """While one process holds the preparation lock, another's source() waits, then reads the prepared data."""
    import subprocess
    import sys
    import time

    from conftest import ROOT

    from mlcv.data import registry

    version_dir = registry._builder("digits", str(tmp_path)).data_dir  # noqa: SLF001 where the files will go
    code = f"from mlcv import data; print(len(data.source(data.get('digits'), 'test', data_dir={str(tmp_path)!r})))"
    with registry._prepare_lock(version_dir):  # noqa: SLF001
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        time.sleep(8.0)  # long enough to import mlcv and reach the lock
        assert proc.poll() is None, "source() did not wait for the lock"
        assert not registry._builder("digits", str(tmp_path)).is_prepared()  # noqa: SLF001
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0 and out.split()[-1] == "360"  # the digits test split, after TFDS's messages

"""Digit scenes: boxes, masks and semantic masks agree; digits never cross roles; records are reproducible."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from mlcv import data
from mlcv.data import pipeline
from mlcv.data.sources import scenes
from mlcv.data.sources.scenes_builder import DigitScenes, DigitScenesSingle, digit_pools

SIZE = 96


@pytest.fixture(scope="module")
def sample() -> list[dict[str, np.ndarray]]:
    """40 scenes of the whole of scikit-learn's digits, seed 5."""
    return list(scenes.generate_split(5, 40, np.arange(1797)))


def _box_of(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]


def test_boxes_masks_and_segmentation_agree(sample):
    """Each box is the tight extent of its mask; masks are non-empty and disjoint and, with the labels, are the
    semantic mask; labels are those of the pasted digits."""
    target = load_digits().target
    for scene in sample:
        n = len(scene["boxes"])
        assert 1 <= n <= 6
        assert (scene["image"].shape, scene["image"].dtype) == ((SIZE, SIZE, 3), np.uint8)
        assert (scene["boxes"].shape, scene["boxes"].dtype) == ((n, 4), np.float32)
        assert (scene["box_labels"].shape, scene["box_labels"].dtype) == ((n,), np.int64)
        assert (scene["masks"].shape, scene["masks"].dtype) == ((n, SIZE, SIZE), np.bool_)
        assert (scene["segmentation"].shape, scene["segmentation"].dtype) == ((SIZE, SIZE), np.uint8)
        np.testing.assert_array_equal(scene["box_labels"], target[scene["digit_index"]])
        assert scene["masks"].any(axis=(1, 2)).all()
        assert scene["masks"].sum(axis=0).max() == 1
        expected = np.zeros((SIZE, SIZE), np.uint8)
        for mask, box, label in zip(scene["masks"], scene["boxes"], scene["box_labels"], strict=True):
            np.testing.assert_array_equal(box, _box_of(mask))
            expected[mask] = 1 + label
        np.testing.assert_array_equal(scene["segmentation"], expected)
        b = scene["boxes"]
        assert (b >= 0).all() and (b <= SIZE).all()
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()


def test_sample_has_overlaps_and_border_digits(sample):
    """Some boxes overlap (digits partly cover each other) and some touch the border (digits cut by it), yet
    digits keep most of their strokes: every visible mask spans at least 3 rows and 3 columns."""
    overlapping = touching = 0
    for scene in sample:
        b = scene["boxes"]
        inter_h = np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0])
        inter_w = np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1])
        overlap = (inter_h > 0) & (inter_w > 0)
        np.fill_diagonal(overlap, False)
        overlapping += overlap.any()
        touching += ((b == 0) | (b == SIZE)).any()
        assert (b[:, 2:] - b[:, :2] >= 3).all()
    assert overlapping >= 1 and touching >= 1


def test_scenes_are_reproducible():
    """Scene i depends on the seed and i only: the same seed gives identical arrays, a shorter split is a prefix,
    and another seed gives other scenes."""
    pool = np.arange(0, 1797, 3)
    first = list(scenes.generate_split(11, 3, pool))
    again = list(scenes.generate_split(11, 2, pool))
    other = next(scenes.generate_split(12, 1, pool))
    for a, b in zip(first, again, strict=False):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert not np.array_equal(first[0]["image"], other["image"])
    assert np.isin(np.concatenate([s["digit_index"] for s in first]), pool).all()


def _sorted_rows(images: np.ndarray) -> np.ndarray:
    flat = images.reshape(len(images), -1)
    return flat[np.lexsort(flat.T[::-1])]


def test_digit_pools_are_the_digits_roles():
    """The pools are disjoint, cover all 1,797 digits and hold exactly the digits of each role of ``digits``."""
    pools = digit_pools()
    assert {r: len(p) for r, p in pools.items()} == {"train": 1257, "validation": 180, "test": 360}
    assert len(np.unique(np.concatenate(list(pools.values())))) == 1797
    images = load_digits().images.astype(np.uint8)
    assert data.get("digits").splits == {"train": "train[:1257]", "validation": "train[1257:]", "test": "test"}
    for role, pool in pools.items():
        stored = data.load_arrays("digits", role)["image"][..., 0]
        # As multisets of images: the pools are sorted, the digits records are in TFDS's shuffled order.
        np.testing.assert_array_equal(_sorted_rows(stored), _sorted_rows(images[pool]), err_msg=role)


@pytest.mark.parametrize("variant", [DigitScenes, DigitScenesSingle])
def test_builder_records_are_the_generated_scenes(variant, tmp_path):
    """A few-record copy of each builder stores scene i of each role's seed as record i, with the declared
    features' shapes and dtypes; each role's scenes paste only that role's digits; the single variant holds
    exactly one digit per scene."""
    name = {DigitScenes: "digit_scenes", DigitScenesSingle: "digit_scenes_single"}[variant]
    sizes = {"train": 3, "validation": 2, "test": 2}

    class Tiny(variant, skip_registration=True):
        SPLIT_SIZES = sizes

    builder = Tiny(data_dir=str(tmp_path), file_format="array_record")
    builder.download_and_prepare(file_format="array_record")
    spec, pools = data.get(name), digit_pools()
    for role, n in sizes.items():
        src = builder.as_data_source(split=spec.splits[role])
        assert len(src) == n
        for i, scene in enumerate(variant.generate(role, n)):
            record = src[i]
            assert set(record) == set(spec.features)
            for key, feature in spec.features.items():
                value = np.asarray(record[key])
                assert value.dtype.name == feature.dtype, key
                assert len(value.shape) == len(feature.shape), key
                assert all(d in (None, v) for d, v in zip(feature.shape, value.shape, strict=True)), key
                np.testing.assert_array_equal(value, scene[key], err_msg=f"{role} {i} {key}")
            assert np.isin(scene["digit_index"], pools[role]).all()
            if variant is DigitScenesSingle:
                assert len(record["boxes"]) == 1


def test_registry_specs_and_padded_batches(tmp_path):
    """The registered specs declare the stored features (11 segmentation classes, 10 box classes, per-channel
    statistics), and the eval pipeline pads a tiny copy's boxes into fixed-shape batches with ``pad_boxes(8)``."""
    spec = data.get("digit_scenes")
    meta = data.meta(spec)
    assert (meta.num_classes, meta.image_shape) == (11, (96, 96, 3))
    assert spec.features["box_labels"].num_classes == 10
    assert data.meta(data.get("digit_scenes_single")).image_shape == (64, 64, 3)
    assert len(spec.op_defaults["normalize"]["mean"]) == 3

    class Tiny(DigitScenes, skip_registration=True):
        SPLIT_SIZES = {"train": 1, "validation": 5, "test": 1}

    builder = Tiny(data_dir=str(tmp_path), file_format="array_record")
    builder.download_and_prepare(file_format="array_record")
    src = builder.as_data_source(split="validation")
    keys = ("image", "boxes", "box_labels", "box_mask", "masks")
    batches = list(
        pipeline.eval_batches(src, batch_size=4, pp="pad_boxes(8)|normalize", op_defaults=spec.op_defaults, keys=keys)
    )
    assert len(batches) == 2
    b = batches[1]
    assert b["image"].shape == (4, 96, 96, 3) and b["image"].dtype == np.float32
    assert (b["boxes"].shape, b["box_labels"].shape, b["box_mask"].shape) == ((4, 8, 4), (4, 8), (4, 8))
    assert b["masks"].shape == (4, 8, 96, 96)
    counts = [len(src[i]["boxes"]) for i in range(5)]
    np.testing.assert_array_equal(np.concatenate([x["box_mask"].sum(1) for x in batches])[:5], counts)


def test_digit_upscaling_is_skimage_bilinear():
    """Digits are upscaled as ``skimage.transform.resize(order=1, mode="constant")``; photos are resampled by an
    averaging filter (rows of weights sum to 1)."""
    from skimage.transform import resize

    digit = load_digits().images[7]
    for shape in ((16, 16), (40, 23), (29, 37)):
        expected = resize(digit / 16, shape, order=1, mode="constant", cval=0.0, anti_aliasing=False)
        np.testing.assert_allclose(scenes.upscale_digit(digit.astype(np.uint8), *shape), expected, atol=1e-6)
    for n_out, n_in in ((96, 256), (96, 89), (5, 5)):
        np.testing.assert_allclose(scenes.resample_matrix(n_out, n_in).sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(scenes.resample_matrix(5, 5), np.eye(5))

"""The TFDS catalogue segmentation dataset oxford_iiit_pet through decode_segmentation, resize, the grain pipeline and
the segmentation evaluator, on tfds.testing.mock_data.

mock_data reads the real builder's feature dict but draws every field apart: a record's ``segmentation_mask`` has
another size than its ``image`` and values 0..255, where the real trimap has the image's size and values 1..3.
:class:`Consistent` gives each record a trimap of its image's size, drawn from a generator seeded by the index.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from mlcv import data, evaluators
from mlcv.config import ConfigError
from mlcv.data import ops, pipeline

NAME = "oxford_iiit_pet"
PP = "decode_segmentation|resize(64)|normalize"
KEYS = ("image", "segmentation")
# The trimap by hand: 1 = pet, 2 = background, 3 = border; and what the two named mappings make of it.
TRIMAP = np.array([[1, 2, 3], [2, 1, 1], [3, 3, 2]])
IGNORING_BORDER = np.array([[1, 0, 255], [0, 1, 1], [255, 255, 0]])
BORDER_CLASS = np.array([[1, 0, 2], [0, 1, 1], [2, 2, 0]])


class Consistent:
    """A mock TFDS source whose trimaps have the image's size and the values 1..3, as real ones do."""

    def __init__(self, src):
        self.src = src
        self.dataset_info = src.dataset_info

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, index: int) -> dict:
        record = dict(self.src[index])
        h, w = record["image"].shape[:2]
        record["segmentation_mask"] = np.random.default_rng(index).integers(1, 4, (h, w, 1), dtype=np.uint8)
        return record


def _source(role: str = "test") -> Consistent:
    spec = data.get(NAME)
    return Consistent(data.source(spec, spec.splits[role]))


def _record(trimap: np.ndarray) -> dict:
    """A record shaped like the TFDS one, with ``trimap`` as its mask and the keys that decoding drops."""
    h, w = trimap.shape[:2]
    return {
        "image": np.zeros((h, w, 3), np.uint8),
        "segmentation_mask": trimap,
        "label": np.int64(3),
        "species": np.int64(1),
        "file_name": b"Abyssinian_1.jpg",
        "head_bbox": np.zeros(4, np.float32),
    }


def test_spec_and_meta():
    """oxford_iiit_pet (any version) holds out 10 % of train, normalises with ImageNet's statistics, and its meta
    describes the decoded records: image and a 2-class segmentation (background, pet)."""
    spec = data.get(f"{NAME}:4.0.0")
    assert spec.name == f"{NAME}:4.0.0" and not spec.builtin
    assert spec.splits == {"train": "train[:90%]", "validation": "train[90%:]", "test": "test"}
    assert spec.op_defaults["normalize"] == {"mean": (123.675, 116.28, 103.53), "std": (58.395, 57.12, 57.375)}
    assert spec.op_defaults["decode_segmentation"] == {"mapping": "pet_trimap"}
    with tfds.testing.mock_data(num_examples=2):
        meta = data.meta(data.get(NAME))
    assert set(meta.features) == {"image", "segmentation"}
    seg = meta.features["segmentation"]  # what the segmentation task and evaluator read their classes from
    assert seg == data.Feature("segmentation", (None, None), "uint8", class_names=("background", "pet"))
    assert seg.num_classes == 2
    assert meta.num_classes == 2 and meta.class_names == ("background", "pet")
    assert meta.image_shape == (None, None, 3)
    assert ops.moves("decode_segmentation") == ("segmentation",)


@pytest.mark.parametrize("dtype", [np.uint8, np.int32])  # the lookup-table path and the general one
@pytest.mark.parametrize("channel", [True, False])  # [H, W, 1] as TFDS stores it, or [H, W]
def test_decode_maps_the_trimap_as_documented(dtype, channel):
    """Pet 1 -> 1, background 2 -> 0, border 3 -> 255 (ignored) by default; border -> class 2 on request; the
    image passes as it is and the other keys are dropped."""
    trimap = TRIMAP.astype(dtype)[..., None] if channel else TRIMAP.astype(dtype)
    defaults = data.get(NAME).op_defaults
    cases = {
        "decode_segmentation": IGNORING_BORDER,  # the dataset's default mapping
        "decode_segmentation(mapping='pet_trimap')": IGNORING_BORDER,
        "decode_segmentation(mapping={1: 1, 2: 0, 3: 255})": IGNORING_BORDER,
        "decode_segmentation(mapping={1: 1, 2: 0, 3: 2})": BORDER_CLASS,
    }
    for pp, want in cases.items():
        record = _record(trimap)
        out = ops.parse(pp, defaults)(dict(record), np.random.default_rng(0))
        assert set(out) == {"image", "segmentation"}, pp
        assert out["image"] is record["image"]
        assert out["segmentation"].dtype == np.uint8 and out["segmentation"].shape == (3, 3)
        np.testing.assert_array_equal(out["segmentation"], want, err_msg=pp)


def test_decode_without_mapping_and_without_the_key():
    """Without a mapping the values are the labels; a record without the mask key passes through unchanged."""
    out = ops.parse("decode_segmentation")(_record(IGNORING_BORDER.astype(np.int64)), None)
    np.testing.assert_array_equal(out["segmentation"], IGNORING_BORDER)
    assert out["segmentation"].dtype == np.uint8
    decoded = {"image": np.zeros((3, 3, 3), np.uint8), "segmentation": IGNORING_BORDER.astype(np.uint8)}
    assert ops.parse("decode_segmentation(mapping='pet_trimap')")(decoded, None) is decoded


@pytest.mark.parametrize("dtype", [np.uint8, np.int32])
def test_values_outside_the_mapping_raise(dtype):
    """A value the mapping lacks stops decoding with the op, the values and the record's key named."""
    trimap = TRIMAP.astype(dtype)
    trimap[0, 0], trimap[2, 2] = 0, 7
    op = ops.parse("decode_segmentation", data.get(NAME).op_defaults)
    with pytest.raises(ValueError, match=r"decode_segmentation: 'segmentation_mask' has value\(s\) \[0, 7\]"):
        op(_record(trimap), None)
    with pytest.raises(ValueError, match=r"decode_segmentation: 'segmentation_mask' has values -1\.\.300"):
        ops.parse("decode_segmentation")(_record(np.array([[-1, 300]])), None)


def test_bad_arguments_and_unaligned_masks_raise():
    """Bad mappings fail when the pp string is parsed; a mask of another size than its image (mock_data's raw
    records) fails on the record rather than being resized silently."""
    for pp, match in [
        ("decode_segmentation(mapping='pets')", "unknown mapping name"),
        ("decode_segmentation(mapping={1: 256})", "do not fit the uint8"),
        ("decode_segmentation(mapping={})", "empty mapping"),
    ]:
        with pytest.raises(ValueError, match=match):
            ops.parse(pp)
    with tfds.testing.mock_data(num_examples=1):
        spec = data.get(NAME)
        raw = data.source(spec, spec.splits["test"])[0]
    assert raw["segmentation_mask"].shape[:2] != raw["image"].shape[:2]
    with pytest.raises(ValueError, match="does not match image"):
        ops.parse("decode_segmentation", spec.op_defaults)(dict(raw), None)


def test_decode_resize_normalize_on_mock_data():
    """Through decode|resize(64)|normalize: a float [64, 64, 3] image and a [64, 64] label map of 0, 1 and 255 equal
    to PIL's nearest-neighbour resize of the trimap mapped by hand.

    The repo's nearest resize samples the pixel holding each output centre, (i + 0.5) * h / 64, as PIL's NEAREST
    does; the two differ only where a centre falls exactly on a pixel edge (128 divides h), which no record here has.
    """
    spec = data.get(NAME)
    with tfds.testing.mock_data(num_examples=4):
        src = _source()
        records = [src[i] for i in range(len(src))]
    for raw in records:
        trimap = raw["segmentation_mask"][..., 0]
        h, w = trimap.shape
        assert h % 128 and w % 128, "a tie between two source pixels: PIL's float rounding may pick either"
        by_hand = np.where(trimap == 1, 1, np.where(trimap == 2, 0, 255)).astype(np.uint8)
        want = np.asarray(Image.fromarray(by_hand).resize((64, 64), Image.NEAREST))
        out = ops.parse(PP, spec.op_defaults)(dict(raw), np.random.default_rng(0))
        assert set(out) == {"image", "segmentation"}
        assert out["image"].shape == (64, 64, 3) and out["image"].dtype == np.float32
        assert out["segmentation"].shape == (64, 64) and out["segmentation"].dtype == np.uint8
        assert set(np.unique(out["segmentation"])) == {0, 1, 255}
        np.testing.assert_array_equal(out["segmentation"], want)


def test_training_augmentation_keeps_labels():
    """The scenes segmenter's augmentation after decode and resize: labels stay 0, 1 and 255 (padding 255)."""
    pp = "decode_segmentation|resize(64)|random_scale(0.8, 1.25)|random_crop(64, pad=8)|flip_lr|normalize"
    spec = data.get(NAME)
    with tfds.testing.mock_data(num_examples=3):
        src = _source("train")
        for i in range(len(src)):
            out = ops.parse(pp, spec.op_defaults)(dict(src[i]), np.random.default_rng(i))
            assert out["image"].shape == (64, 64, 3) and out["segmentation"].shape == (64, 64)
            assert set(np.unique(out["segmentation"])) <= {0, 1, 255}


def _batches(num_examples: int, mapping: str | dict[int, int] = "pet_trimap") -> tuple[list[dict], data.DatasetMeta]:
    spec = data.get(NAME)
    # The task's label check: every label is a class 0..1 or the ignore label 255.
    checks = (NAME, {"segmentation": (2, 255)})
    with tfds.testing.mock_data(num_examples=num_examples):
        src = _source()
        meta = data.meta(spec, src)
        pp = f"decode_segmentation(mapping={mapping!r})|resize(64)|normalize"
        batches = pipeline.eval_batches(
            src, batch_size=8, pp=pp, op_defaults=spec.op_defaults, keys=KEYS, checks=checks
        )
        return list(batches), meta


def test_perfect_logits_through_the_pipeline_score_miou_1():
    """11 records give two batches of 8 (the last masked); logits equal to the labels score mIoU 1 with the
    evaluator built from the dataset's meta, counting every labelled pixel and no border pixel."""
    batches, meta = _batches(11)
    assert len(batches) == 2 and batches[1]["mask"].tolist() == [1.0] * 3 + [0.0] * 5
    for batch in batches:
        assert batch["image"].shape == (8, 64, 64, 3) and batch["segmentation"].shape == (8, 64, 64)
    ev = evaluators.build({"type": "segmentation"}, meta)
    assert (ev.num_classes, ev.class_names, ev.ignore_label) == (2, ("background", "pet"), 255)
    step = jax.jit(ev.batch_fn)
    labelled = 0
    for batch in batches:
        labels = batch["segmentation"]
        # One-hot of each label: argmax gives it back (an ignored pixel's all-zero row gives 0, and is not counted).
        logits = (labels[..., None] == np.arange(2)).astype(np.float32)
        ev.update(jax.device_get(step({"logits": logits}, batch)))
        labelled += int(((labels != 255) & (batch["mask"][:, None, None] > 0)).sum())
    scalars, extras = ev.result()
    assert scalars["miou"] == pytest.approx(1.0) and scalars["pixel_accuracy"] == pytest.approx(1.0)
    assert np.trace(extras["confusion_matrix"]) == np.sum(extras["confusion_matrix"]) == labelled
    assert 0 < labelled < 11 * 64 * 64  # border pixels exist and are left out


def test_border_as_a_class_needs_three_classes():
    """A mapping with the border as class 2 gives label 2, which the 2-class label check stops, naming the dataset."""
    with pytest.raises(ConfigError, match=NAME):
        _batches(2, mapping={1: 1, 2: 0, 3: 2})

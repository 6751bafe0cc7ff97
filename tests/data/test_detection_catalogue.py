"""The TFDS catalogue detection datasets (voc/2007, coco/2017) through decode_detection, the box ops, the grain
pipeline and the detection evaluator, on tfds.testing.mock_data (course §10: detection data).

mock_data reads the real builders' feature dicts but draws every field apart: the ``objects`` fields of one record
get different lengths and each bbox coordinate is uniform in [0, 1), so ``ymin > ymax`` happens. Real records have
neither; :class:`Consistent` cuts the fields to a common length and orders each box's corners.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from mlcv import data, evaluators
from mlcv.data import ops, pipeline

CASES = {"voc/2007": ("is_difficult", 20), "coco/2017": ("is_crowd", 80)}
PP = "decode_detection|resize(64)|pad_boxes(10)|normalize"
KEYS = ("image", "boxes", "box_labels", "box_mask", "box_crowd", "box_area")


class Consistent:
    """A mock TFDS source whose records have aligned object fields and ordered box corners, as real ones do."""

    def __init__(self, src):
        self.src = src
        self.dataset_info = src.dataset_info

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, index: int) -> dict:
        record = dict(self.src[index])
        fields = {k: np.asarray(v) for k, v in record["objects"].items()}
        n = min(len(v) for v in fields.values())
        fields = {k: v[:n] for k, v in fields.items()}
        b = fields["bbox"]
        fields["bbox"] = np.concatenate([np.minimum(b[:, :2], b[:, 2:]), np.maximum(b[:, :2], b[:, 2:])], axis=1)
        record["objects"] = fields
        return record


def _source(name: str, role: str = "test") -> Consistent:
    spec = data.get(name)
    return Consistent(data.source(spec, spec.splits[role]))


def test_specs_and_meta():
    """voc/2007 and coco/2017 (any version) have detection specs whose meta describes the decoded records."""
    voc, coco = data.get("voc/2007"), data.get("coco/2017:1.1.0")
    assert voc.splits == {"train": "train", "validation": "validation", "test": "test"}
    assert coco.name == "coco/2017:1.1.0" and coco.splits["test"] == "validation"
    assert coco.op_defaults["normalize"]["mean"] == (123.675, 116.28, 103.53)
    with tfds.testing.mock_data(num_examples=2):
        for name, (_, num_classes) in CASES.items():
            meta = data.meta(data.get(name))
            assert set(meta.features) == {"image", "boxes", "box_labels", "box_crowd", "box_area"}
            assert meta.features["boxes"] == data.Feature("boxes", (None, 4), "float32")
            labels = meta.features["box_labels"]  # what DetectionTask reads its classes from
            assert (labels.kind, labels.shape, labels.num_classes) == ("box_labels", (None,), num_classes)
            assert meta.image_shape == (None, None, 3) and meta.num_classes is None
        assert data.meta(voc).features["box_labels"].class_names[:2] == ("aeroplane", "bicycle")


@pytest.mark.parametrize("name", CASES)
def test_decode_resize_pad_normalize(name):
    """Boxes come out in pixels (normalised x [H, W, H, W]), then move with resize; rows stay aligned and padded."""
    flag, _ = CASES[name]
    spec = data.get(name)
    with tfds.testing.mock_data(num_examples=3):
        src = _source(name)
        for i in range(len(src)):
            raw = src[i]
            objects, (h, w) = raw["objects"], raw["image"].shape[:2]
            decoded = ops.parse("decode_detection")(dict(raw), np.random.default_rng(0))
            assert set(decoded) == {"image", "boxes", "box_labels", "box_crowd", "box_area"}
            np.testing.assert_array_equal(decoded["boxes"], objects["bbox"] * np.float32([h, w, h, w]))
            out = ops.parse(PP, spec.op_defaults)(dict(raw), np.random.default_rng(0))
            k = min(len(objects["label"]), 10)
            assert out["image"].shape == (64, 64, 3) and out["image"].dtype == np.float32
            np.testing.assert_allclose(out["boxes"][:k], objects["bbox"][:k] * 64, rtol=1e-5, atol=1e-4)
            np.testing.assert_array_equal(out["box_labels"][:k], objects["label"][:k])
            np.testing.assert_array_equal(out["box_crowd"][:k], objects[flag][:k])
            np.testing.assert_array_equal(out["box_mask"], np.arange(10) < k)
            if "area" in objects:  # COCO's own area, rescaled with the image
                want = objects["area"][:k] * (64 / h) * (64 / w)
            else:  # the box's area in pixels
                want = np.prod(objects["bbox"][:k, 2:] - objects["bbox"][:k, :2], axis=1) * 64 * 64
            np.testing.assert_allclose(out["box_area"][:k], want, rtol=1e-4)
            for key in ("boxes", "box_labels", "box_crowd", "box_area"):
                assert not np.asarray(out[key][k:]).any(), key
            assert out["box_labels"].dtype == np.int32 and out["box_crowd"].dtype == bool


def test_flag_modes():
    """crowd / difficult: 'flag' keeps the objects flagged, 'drop' removes them, 'keep' makes them ordinary."""
    with tfds.testing.mock_data(num_examples=1):
        for name, (flag, _) in CASES.items():
            raw = _source(name)[0]
            flagged = raw["objects"][flag]
            arg = "crowd" if flag == "is_crowd" else "difficult"
            rng = np.random.default_rng(0)
            dropped = ops.parse(f"decode_detection({arg}='drop')")(dict(raw), rng)
            kept = ops.parse(f"decode_detection({arg}='keep')")(dict(raw), rng)
            assert flagged.any() and not flagged.all()
            np.testing.assert_array_equal(dropped["box_labels"], raw["objects"]["label"][~flagged])
            assert not dropped["box_crowd"].any() and not kept["box_crowd"].any()
            assert len(kept["boxes"]) == len(flagged)
    with pytest.raises(ValueError, match="must be one of"):
        ops.parse("decode_detection(crowd='ignore')")


def test_unaligned_object_fields_raise():
    """mock_data's raw records (object fields of different lengths) are refused, not silently cut."""
    with tfds.testing.mock_data(num_examples=1):
        spec = data.get("coco/2017")
        raw = data.source(spec, spec.splits["test"])[0]
    with pytest.raises(ValueError, match="different lengths"):
        ops.parse("decode_detection")(dict(raw), np.random.default_rng(0))


@pytest.mark.parametrize("padded", [False, True])
def test_crops_and_flips_keep_crowd_and_area_aligned(padded):
    """flip_lr and random_crop move box_crowd and box_area with their boxes (dropped or zeroed together)."""
    with tfds.testing.mock_data(num_examples=3):
        records = [_source("coco/2017")[i] for i in range(3)]
    for seed, raw in enumerate(records):
        ex = ops.parse("decode_detection|resize((40, 48))" + ("|pad_boxes(60)" if padded else ""))(dict(raw), None)
        n = len(raw["objects"]["label"])
        ex["box_labels"] = np.arange(len(ex["boxes"]))  # the row's identity, to find it after the op
        flipped = ops.parse("flip_lr(p=1.0)")(dict(ex), np.random.default_rng(seed))
        np.testing.assert_allclose(flipped["boxes"][:n, [1, 3]], 48 - ex["boxes"][:n, [3, 1]], atol=1e-4)
        for key in ("box_crowd", "box_area"):
            np.testing.assert_array_equal(flipped[key], ex[key])
        cropped = ops.parse("random_crop((24, 20))")(dict(ex), np.random.default_rng(seed))
        live = cropped["box_mask"] > 0 if padded else np.ones(len(cropped["boxes"]), bool)
        rows = cropped["box_labels"][live]
        assert 0 < len(rows) < n or padded  # some boxes leave the crop
        np.testing.assert_array_equal(cropped["box_crowd"][live], ex["box_crowd"][rows])
        before, after = ex["boxes"][rows], cropped["boxes"][live]
        kept = np.prod(after[:, 2:] - after[:, :2], 1) / np.prod(before[:, 2:] - before[:, :2], 1)
        np.testing.assert_allclose(cropped["box_area"][live], ex["box_area"][rows] * kept, rtol=1e-4)
        if padded:
            assert not cropped["box_crowd"][~live].any() and not cropped["box_area"][~live].any()


def _batches(name: str, num_examples: int, pp: str = PP) -> list[dict]:
    spec = data.get(name)
    with tfds.testing.mock_data(num_examples=num_examples):
        src = _source(name)
        return list(pipeline.eval_batches(src, batch_size=8, pp=pp, op_defaults=spec.op_defaults, keys=KEYS))


@pytest.mark.parametrize("name", CASES)
def test_eval_batches_have_fixed_shapes(name):
    """Through the grain pipeline: 11 records give two batches of 8 with fixed shapes, the last one masked."""
    batches = _batches(name, 11)
    assert len(batches) == 2 and batches[1]["mask"].tolist() == [1.0] * 3 + [0.0] * 5
    want = {
        "image": ((8, 64, 64, 3), np.float32),
        "boxes": ((8, 10, 4), np.float32),
        "box_labels": ((8, 10), np.int32),
        "box_mask": ((8, 10), np.float32),
        "box_crowd": ((8, 10), bool),
        "box_area": ((8, 10), np.float32),
        "mask": ((8,), np.float32),
    }
    for batch in batches:
        assert {k: (v.shape, v.dtype) for k, v in batch.items()} == want


def _perfect(batch: dict) -> dict:
    """Detections equal to the ground truth of the non-crowd objects, score 1."""
    real = (batch["box_mask"] > 0) & ~batch["box_crowd"]
    return {
        "det_boxes": batch["boxes"],
        "det_scores": real.astype(np.float32),
        "det_classes": batch["box_labels"],
        "det_mask": real.astype(np.float32),
    }


def _evaluate(batches: list[dict], with_crowd: bool = True) -> dict[str, float]:
    ev = evaluators.build({"type": "detection", "num_classes": 80})
    step = jax.jit(ev.batch_fn)
    for batch in batches:
        outputs = _perfect(batch)
        ev.update(jax.device_get(step(outputs, {k: v for k, v in batch.items() if with_crowd or k != "box_crowd"})))
    return ev.result()[0]


def test_perfect_detections_on_mock_coco_score_ap_1():
    """The evaluator fed the non-crowd ground truth gets AP 1: crowd regions are ignored, not missed.

    Without box_crowd the same crowd regions count as missed objects, and recall falls below 1.
    """
    batches = _batches("coco/2017", 10, "decode_detection|resize(64)|pad_boxes(50)|normalize")
    assert any((b["box_crowd"] & (b["box_mask"] > 0)).any() for b in batches)
    scalars = _evaluate(batches)
    assert scalars["ap"] == pytest.approx(1.0) and scalars["ap50"] == pytest.approx(1.0)
    assert scalars["ar100"] == pytest.approx(1.0)
    blind = _evaluate(batches, with_crowd=False)
    assert blind["ar100"] < 1.0

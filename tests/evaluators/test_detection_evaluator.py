"""The detection evaluator run as the loop runs it (jitted ``batch_fn`` over padded batches, ``update``, ``result``)
against pycocotools on the unpadded data, and its figures."""

from __future__ import annotations

import json
import types

import jax
import numpy as np
import pytest

from mlcv import evaluators
from mlcv.config import ConfigError
from mlcv.metrics import detection
from tests.metrics.test_detection_metrics import coco_reference, random_split

BATCH, MAX_BOXES, MAX_DETS = 8, 16, 160


def padded_batches(gts, dets, rng, with_optional: bool):
    """Batches of the task's contract: boxes padded to fixed counts with garbage rows of mask 0, and the last batch
    padded with garbage examples of mask 0 (which a missed mask would count)."""

    def pad(rows, n, fill):
        out = fill(n)
        out[: len(rows)] = rows
        return out

    def garbage(*tail):
        return lambda m: rng.uniform(0, 300, (m, *tail)).astype(np.float32)

    def const(value, dtype):
        return lambda m: np.full(m, value, dtype)

    out = []
    for start in range(0, len(gts), BATCH):
        rows = list(range(start, min(start + BATCH, len(gts))))
        rows += [int(rng.integers(0, len(gts)))] * (BATCH - len(rows))
        batch = {
            "mask": np.array([1.0 if k < len(gts) - start else 0.0 for k in range(BATCH)], np.float32),
            "image": rng.normal(size=(BATCH, 24, 32, 3)).astype(np.float32),
        }
        cols: dict[str, list] = {k: [] for k in ("boxes", "box_labels", "box_mask", "box_crowd", "box_area")}
        cols |= {k: [] for k in ("det_boxes", "det_scores", "det_classes", "det_mask")}
        for i in rows:
            g, d = gts[i], dets[i]
            n, k = len(g["labels"]), len(d["scores"])
            cols["boxes"].append(pad(g["boxes"], MAX_BOXES, garbage(4)))
            cols["box_labels"].append(pad(g["labels"].astype(np.int32), MAX_BOXES, const(0, np.int32)))
            cols["box_mask"].append(np.arange(MAX_BOXES) < n)
            cols["box_crowd"].append(pad(g["crowd"], MAX_BOXES, const(1, np.float32)))
            cols["box_area"].append(pad(g["area"].astype(np.float32), MAX_BOXES, garbage()))
            cols["det_boxes"].append(pad(d["boxes"], MAX_DETS, garbage(4)))
            cols["det_scores"].append(pad(d["scores"], MAX_DETS, const(1, np.float32)))
            cols["det_classes"].append(pad(d["labels"].astype(np.int32), MAX_DETS, const(0, np.int32)))
            cols["det_mask"].append(np.arange(MAX_DETS) < k)
        batch |= {key: np.stack(v) for key, v in cols.items()}
        batch["box_mask"] = batch["box_mask"].astype(np.float32)
        batch["det_mask"] = batch["det_mask"].astype(np.float32)
        if not with_optional:
            del batch["box_crowd"], batch["box_area"], batch["image"]
        out.append(batch)
    assert out[-1]["mask"].sum() < BATCH
    return out


def run(ev, batches):
    step = jax.jit(ev.batch_fn)
    for b in batches:
        outputs = {k: b[k] for k in ("det_boxes", "det_scores", "det_classes", "det_mask")}
        inputs = {k: v for k, v in b.items() if k not in outputs}
        ev.update(jax.device_get(step(outputs, inputs)))
    return ev.result()


@pytest.mark.parametrize("with_optional", [True, False])
def test_equals_pycocotools_through_padded_batches(with_optional, tmp_path):
    rng = np.random.default_rng(11)
    gts, dets = random_split(rng, 37, 3, crowded=True)
    for g in gts:  # float32 areas, as a batch carries them
        g["area"] = np.float32(rng.uniform(0, 12000, len(g["labels"])))
    if not with_optional:
        gts = [{"boxes": g["boxes"], "labels": g["labels"]} for g in gts]
    zeros = [np.zeros(len(g["labels"]), np.float32) for g in gts]
    full = [{"crowd": z, "area": z} | g for g, z in zip(gts, zeros, strict=True)]
    batches = padded_batches(full, dets, rng, with_optional)
    ev = evaluators.build({"type": "detection", "num_classes": 3})
    scalars, extras = run(ev, batches)
    assert set(scalars) == set(ev.directions) == set(detection.STAT_NAMES) and ev.percent == set(scalars)
    assert all(isinstance(v, float) for v in scalars.values())
    ref = coco_reference(gts, dets, 3)
    np.testing.assert_allclose([scalars[k] for k in detection.STAT_NAMES], ref.stats, rtol=0, atol=1e-6)
    p50 = ref.eval["precision"][0, :, :, 0, -1].T
    np.testing.assert_allclose(extras["pr_curves"]["precision"], np.where(p50 > -1, p50, np.nan), atol=1e-6)
    ap = ref.eval["precision"][:, :, :, 0, -1].mean((0, 1))  # -1 throughout for the class without ground truth
    np.testing.assert_allclose(extras["per_class_ap"], np.where(ap > -1, ap, np.nan), atol=1e-6)
    assert extras["pr_curves"]["iou_threshold"] == 0.5 and len(extras["pr_curves"]["recall"]) == 101
    by_score = extras["precision_recall_by_score"]
    th, precision, recall = detection.precision_recall_at_thresholds(gts, dets, thresholds=by_score["thresholds"])
    np.testing.assert_allclose(by_score["precision"], precision)
    np.testing.assert_allclose(by_score["recall"], recall)
    assert len(extras["detection_examples"]) == (4 if with_optional else 0)
    json.dumps(extras)  # JSON-able, as the run's summary stores it
    paths = ev.plot(extras, tmp_path, "test")
    names = ["precision_recall_test.png"] + (["detections_test.png"] if with_optional else [])
    assert [p.name for p in paths] == names and all(p.stat().st_size > 0 for p in paths)
    ev.reset()
    assert run(ev, batches)[0] == scalars


def test_meta_fills_classes_and_undefined_sizes_are_nan():
    meta = types.SimpleNamespace(num_classes=2, class_names=("cat", "dog"))
    ev = evaluators.build({"type": "detection", "draw_images": 1}, meta)
    assert ev.num_classes == 2 and ev.class_names == ("cat", "dog")
    box = np.array([[[2, 2, 12, 12]]], np.float32)  # one small object, found
    batch = {"boxes": box, "box_labels": np.array([[1]]), "box_mask": np.ones((1, 1)), "mask": np.ones(1)}
    outputs = {"det_boxes": box, "det_scores": np.array([[0.9]]), "det_classes": np.array([[1]], np.int32)}
    outputs["det_mask"] = np.ones((1, 1))
    ev.update(jax.device_get(jax.jit(ev.batch_fn)(outputs, batch)))
    scalars, extras = ev.result()
    assert scalars["ap_small"] == pytest.approx(1.0) and scalars["ar100"] == 1.0
    assert np.isnan(scalars["ap_medium"]) and np.isnan(scalars["ar_large"])
    assert np.isnan(extras["per_class_ap"][0]) and extras["per_class_ap"][1] == pytest.approx(1.0)


def test_bad_config_is_rejected():
    with pytest.raises(ConfigError, match="num_classes"):
        evaluators.build({"type": "detection"})
    with pytest.raises(ConfigError, match="area_ranges"):
        evaluators.build({"type": "detection", "num_classes": 2, "area_ranges": {"small": [0, 1024]}})

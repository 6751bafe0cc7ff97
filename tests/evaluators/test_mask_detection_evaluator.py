"""The ``mask_detection`` evaluator run as the loop runs it (jitted ``batch_fn`` over batches with padded rows and
padded examples, ``update``, ``result``) against pycocotools' ``segm`` evaluation of the unpadded data, beside the
box evaluator in one run."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from mlcv import evaluators
from mlcv.metrics import detection, overlaps
from mlcv.training import runs
from tests.metrics.test_detection_metrics import coco_reference
from tests.metrics.test_mask_ap import SIZE, coco_segm_reference, random_mask_split

BATCH, MAX_BOXES, MAX_DETS = 8, 10, 28
OUTPUT_KEYS = ("det_boxes", "det_scores", "det_classes", "det_mask", "det_masks")


def bounding_boxes(masks: np.ndarray) -> np.ndarray:
    """``[N, 4]`` (y0, x0, y1, x1) around each mask (the box evaluator's input; zeros for an empty mask)."""
    out = np.zeros((len(masks), 4), np.float32)
    for j, m in enumerate(overlaps.binarize(masks)):
        ys, xs = np.nonzero(m)
        if len(ys):
            out[j] = ys.min(), xs.min(), ys.max() + 1, xs.max() + 1
    return out


def padded_batches(gts, dets, rng):
    """The task's contract: rows padded to fixed counts with garbage masks of ``box_mask``/``det_mask`` 0, detected
    masks as float probabilities, the last batch padded with real-looking examples of ``mask`` 0."""

    def pad(rows, n, fill):
        out = fill(n)
        out[: len(rows)] = rows
        return out

    def garbage(m, *tail):
        return rng.random((m, *tail)) < 0.5

    out = []
    for start in range(0, len(gts), BATCH):
        rows = list(range(start, min(start + BATCH, len(gts))))
        rows += [int(rng.integers(0, len(gts))) for _ in range(BATCH - len(rows))]
        cols = {k: [] for k in ("boxes", "box_labels", "box_mask", "box_crowd", "masks", *OUTPUT_KEYS)}
        for i in rows:
            g, d = gts[i], dets[i]
            n, k = len(g["labels"]), len(d["scores"])
            cols["masks"].append(pad(g["masks"], MAX_BOXES, lambda m: garbage(m, *SIZE)))
            cols["boxes"].append(pad(bounding_boxes(g["masks"]), MAX_BOXES, lambda m: np.zeros((m, 4), np.float32)))
            cols["box_labels"].append(pad(g["labels"].astype(np.int32), MAX_BOXES, lambda m: np.zeros(m, np.int32)))
            cols["box_crowd"].append(pad(g["crowd"], MAX_BOXES, lambda m: np.ones(m, np.float32)))
            cols["box_mask"].append((np.arange(MAX_BOXES) < n).astype(np.float32))
            binary = pad(overlaps.binarize(d["masks"]), MAX_DETS, lambda m: garbage(m, *SIZE))
            prob = np.where(binary, rng.choice([0.5, 0.8, 1.0], binary.shape), rng.uniform(0, 0.49, binary.shape))
            cols["det_masks"].append(prob.astype(np.float32))
            cols["det_boxes"].append(pad(bounding_boxes(d["masks"]), MAX_DETS, lambda m: np.ones((m, 4), np.float32)))
            cols["det_scores"].append(pad(d["scores"], MAX_DETS, lambda m: np.ones(m, np.float32)))
            cols["det_classes"].append(pad(d["labels"].astype(np.int32), MAX_DETS, lambda m: np.zeros(m, np.int32)))
            cols["det_mask"].append((np.arange(MAX_DETS) < k).astype(np.float32))
        batch = {key: np.stack(v) for key, v in cols.items()}
        batch["mask"] = np.array([1.0 if j < len(gts) - start else 0.0 for j in range(BATCH)], np.float32)
        batch["image"] = rng.normal(size=(BATCH, *SIZE, 3)).astype(np.float32)
        out.append(batch)
    assert out[-1]["mask"].sum() < BATCH
    return out


def run(evs: dict[str, evaluators.Evaluator], batches):
    """One pass as the loop makes it, every evaluator in one jitted step; the merged ``(scalars, extras)``."""
    step = jax.jit(lambda outputs, batch: {name: ev.batch_fn(outputs, batch) for name, ev in evs.items()})
    for b in batches:
        outputs = {k: b[k] for k in OUTPUT_KEYS}
        fetched = jax.device_get(step(outputs, {k: v for k, v in b.items() if k not in outputs}))
        for name, ev in evs.items():
            ev.update(fetched[name])
    return fetched


def test_equals_pycocotools_through_padded_batches_beside_the_box_evaluator(tmp_path):
    rng = np.random.default_rng(5)
    gts, dets = random_mask_split(rng, 19, 3)
    batches = padded_batches(gts, dets, rng)
    evs = runs.build_evaluators({"val": {"type": "detection"}, "val_masks": {"type": "mask_detection"}}, _Meta())
    mask_ev = evs["val_masks"]
    assert isinstance(mask_ev, evaluators.get("mask_detection")) and "mask_detection" in evaluators.names()
    fetched = run(evs, batches)
    # What travels from the device: the masks thresholded and packed, 1 bit a pixel.
    packed = fetched["val_masks"]["det_masks"]
    assert packed.dtype == np.uint8 and packed.shape == (BATCH, MAX_DETS, SIZE[0] * SIZE[1] // 8)
    np.testing.assert_array_equal(
        packed, np.packbits((batches[-1]["det_masks"] >= 0.5).reshape(BATCH, MAX_DETS, -1), -1)
    )
    box_scalars, box_extras = evs["val"].result()
    mask_scalars, mask_extras = mask_ev.result()
    assert set(mask_scalars) == set(mask_ev.directions) == {f"mask_{k}" for k in detection.STAT_NAMES}
    assert mask_ev.percent == set(mask_scalars) and not set(mask_scalars) & set(box_scalars)
    assert all(k.startswith("mask_") for k in mask_extras) and not set(mask_extras) & set(box_extras)

    ref = coco_segm_reference(gts, dets, 3)
    np.testing.assert_allclose([mask_scalars[f"mask_{k}"] for k in detection.STAT_NAMES], ref.stats, rtol=0, atol=1e-6)
    assert 0.05 < mask_scalars["mask_ap"] < 0.95
    ap = ref.eval["precision"][:, :, :, 0, -1].mean((0, 1))
    np.testing.assert_allclose(mask_extras["mask_per_class_ap"], np.where(ap > -1, ap, np.nan), atol=1e-6)
    p50 = ref.eval["precision"][0, :, :, 0, -1].T
    np.testing.assert_allclose(mask_extras["mask_pr_curves"]["precision"], np.where(p50 > -1, p50, np.nan), atol=1e-6)
    by_score = mask_extras["mask_precision_recall_by_score"]
    _, precision, recall = detection.precision_recall_at_thresholds(
        gts, dets, thresholds=by_score["thresholds"], iou_type="segm"
    )
    np.testing.assert_allclose(by_score["precision"], precision)
    np.testing.assert_allclose(by_score["recall"], recall)
    # The box evaluator beside it is unchanged: its numbers are pycocotools' bbox ones on the masks' boxes.
    boxes = [{"boxes": bounding_boxes(g["masks"]), "labels": g["labels"], "crowd": g["crowd"]} for g in gts]
    det_boxes = [{"boxes": bounding_boxes(d["masks"]), "labels": d["labels"], "scores": d["scores"]} for d in dets]
    box_ref = coco_reference(boxes, det_boxes, 3)
    np.testing.assert_allclose([box_scalars[k] for k in detection.STAT_NAMES], box_ref.stats, rtol=0, atol=1e-6)

    # The loop merges both evaluators' results and hands every evaluator the merged extras to draw.
    for ev in evs.values():
        ev.reset()
    run(evs, batches)
    scalars, extras = runs.results(evs)
    assert {"ap", "mask_ap", "ar100", "mask_ar100"} <= set(scalars) and scalars["mask_ap"] == mask_scalars["mask_ap"]
    json.dumps(extras)
    examples = extras["mask_detection_examples"]
    assert len(examples) == 4 and {"gt_masks_png", "det_masks_png"} <= set(examples[0])
    paths = [p.name for ev in evs.values() for p in ev.plot(extras, tmp_path, "test")]
    assert paths == ["precision_recall_test.png", "detections_test.png"] + [
        "mask_precision_recall_test.png",
        "mask_detections_test.png",
    ]
    assert all((tmp_path / p).stat().st_size > 0 for p in paths)


def test_drawn_masks_survive_the_png():
    ev = evaluators.build({"type": "mask_detection", "num_classes": 2, "score_threshold_for_drawing": 0.5})
    masks = np.zeros((3, 6, 5), bool)
    masks[0, :2], masks[1, 1:4, 1:3], masks[2, 4:] = True, True, True
    gt = {"boxes": np.zeros((3, 4)), "labels": np.arange(3) % 2, "crowd": np.zeros(3)}
    det = {"boxes": np.zeros((3, 4)), "scores": np.array([0.6, 0.9, 0.1]), "labels": np.array([0, 1, 1])}
    packed = overlaps.PackedMasks.pack(masks)
    ex = ev._example(np.zeros((6, 5, 3)), gt | {"masks": packed}, det | {"masks": packed})
    gt_labels = evaluators.plots.png_labels(ex["gt_masks_png"])
    np.testing.assert_array_equal(gt_labels, np.argmax(masks * np.arange(1, 4)[:, None, None], 0) + masks.any(0))
    # Detections at >= 0.5: the first two, the better (0.9, label 2) drawn over the other where they overlap.
    det_labels = evaluators.plots.png_labels(ex["det_masks_png"])
    assert det_labels[1, 1] == 2 and det_labels[0, 0] == 1 and det_labels[5, 0] == 0


def test_mismatched_mask_shapes_are_rejected():
    ev = evaluators.build({"type": "mask_detection", "num_classes": 2})
    batch = {
        "boxes": np.zeros((1, 2, 4)),
        "box_labels": np.zeros((1, 2), np.int32),
        "box_mask": np.ones((1, 2)),
        "masks": np.zeros((1, 2, 8, 8), bool),
        "mask": np.ones(1),
    }
    outputs = {"det_boxes": np.zeros((1, 3, 4)), "det_scores": np.zeros((1, 3)), "det_classes": np.zeros((1, 3))}
    outputs |= {"det_mask": np.ones((1, 3)), "det_masks": np.zeros((1, 3, 8, 9), np.float32)}
    with pytest.raises(ValueError, match=r"det_masks \(1, 3, 8, 9\)"):
        ev.batch_fn(outputs, batch)


class _Meta:
    num_classes = 3
    class_names = ("a", "b", "c")

"""Detection metrics: IoU and GIoU and a 3-detection AP worked by hand, and COCO AP/AR equal to pycocotools'
``COCOeval`` on randomised splits (ties, crowds, empty images, every size range, classes missing on either side)."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mlcv.metrics import detection, overlaps


def coco_reference(gts, dets, num_classes: int, **params) -> COCOeval:
    """pycocotools' evaluation of the same split: (y0, x0, y1, x1) -> [x0, y0, x1 - x0, y1 - y0] in float64.

    Image, annotation and category ids start at 1 (pycocotools reads id 0 as "no match"); class c is category c + 1.
    ``params`` overrides ``COCOeval.params`` attributes (iouThrs, maxDets, areaRng, areaRngLbl, recThrs).
    """
    images, anns, results = [], [], []
    for i, (g, d) in enumerate(zip(gts, dets, strict=True)):
        images.append({"id": i + 1})
        b = np.asarray(g["boxes"], np.float64).reshape(-1, 4)
        crowd = np.asarray(g.get("crowd", np.zeros(len(b))))
        for j, (y0, x0, y1, x1) in enumerate(b):
            w, h = x1 - x0, y1 - y0
            area = float(g["area"][j]) if "area" in g else w * h
            anns.append(
                {"id": len(anns) + 1, "image_id": i + 1, "category_id": int(g["labels"][j]) + 1, "bbox": [x0, y0, w, h]}
                | {"area": area, "iscrowd": int(crowd[j] > 0)}
            )
        for (y0, x0, y1, x1), label, score in zip(
            np.asarray(d["boxes"], np.float64), d["labels"], d["scores"], strict=True
        ):
            results.append(
                {
                    "image_id": i + 1,
                    "category_id": int(label) + 1,
                    "score": float(score),
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                }
            )
    return run_cocoeval(images, anns, results, num_classes, "bbox", **params)


def run_cocoeval(images: list, anns: list, results: list, num_classes: int, iou_type: str, **params) -> COCOeval:
    """pycocotools' ``COCOeval`` of ``iou_type`` on COCO-format lists, evaluated, accumulated and summarized."""
    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns, "categories": [{"id": c + 1} for c in range(num_classes)]}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools reports progress on stdout
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(results), iou_type)
        for key, value in params.items():
            setattr(ev.params, key, value)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def random_split(rng: np.random.Generator, n_images: int, num_classes: int, crowded: bool = False):
    """Ground truth and detections per image with everything COCO's rules distinguish.

    Class ``C-1`` has detections but never ground truth, class ``C-2`` ground truth but never detections. Scores
    are multiples of 0.1, so ties occur within and across images; some ground truth is duplicated (IoU ties),
    some is a crowd region, sides run from 3 to 250 px (every size range) and a few boxes are exactly 32 x 32 or
    96 x 96 (on the range bounds). Some images have no objects, some no detections; ``crowded`` puts more than
    100 detections of one class on some images.
    """
    gts, dets = [], []
    for _ in range(n_images):
        n = 0 if rng.random() < 0.15 else int(rng.integers(1, 13))
        side = np.exp(rng.uniform(np.log(3), np.log(250), (n, 2)))
        side[rng.random(n) < 0.1] = rng.choice([32.0, 96.0])
        corner = rng.uniform(0, 400, (n, 2))
        boxes = np.c_[corner, corner + side].astype(np.float32)
        labels = rng.integers(0, num_classes - 1, n)
        if n >= 2 and rng.random() < 0.3:
            boxes[1], labels[1] = boxes[0], labels[0]
        gts.append({"boxes": boxes, "labels": labels, "crowd": (rng.random(n) < 0.1).astype(np.float32)})
        k = 0 if rng.random() < 0.1 else int(rng.integers(1, 30))
        if crowded and rng.random() < 0.3:
            k = int(rng.integers(100, 140))
        near = (rng.random(k) < 0.7) & (n > 0)
        src = rng.integers(0, max(n, 1), k)
        scale = np.tile(side[src] if n else np.ones((k, 2)), 2)
        corner = rng.uniform(0, 400, (k, 2))
        far = np.c_[corner, corner + np.exp(rng.uniform(np.log(3), np.log(250), (k, 2)))]
        jittered = (boxes[src] if n else far) + rng.normal(0, rng.choice([0.03, 0.1]), (k, 4)) * scale
        det_boxes = np.where(near[:, None], jittered, far).astype(np.float32)
        det_boxes[:, 2:] = np.maximum(det_boxes[:, 2:], det_boxes[:, :2] + 0.5)
        guess = rng.integers(0, num_classes, k)
        det_labels = np.where(near & (rng.random(k) < 0.85), labels[src] if n else guess, guess)
        if crowded and k >= 100:
            det_labels[:] = 0
        det_labels[det_labels == num_classes - 2] = num_classes - 1
        scores = (np.round(rng.random(k), 1)).astype(np.float32)
        dets.append({"boxes": det_boxes, "labels": det_labels, "scores": scores})
    return gts, dets


def assert_equal_to_pycocotools(ours: detection.CocoEvaluation, ref: COCOeval, atol: float = 1e-6) -> float:
    """All of ``eval['precision']``, ``eval['recall']``, the stats (-1 read as NaN) and per-class AP; the max error."""
    np.testing.assert_allclose(ours.precision, ref.eval["precision"], rtol=0, atol=atol)
    np.testing.assert_allclose(ours.recall, ref.eval["recall"], rtol=0, atol=atol)
    stats = np.where(ref.stats == -1, np.nan, ref.stats)
    np.testing.assert_allclose([ours.stats[k] for k in detection.STAT_NAMES], stats, rtol=0, atol=atol)
    p = ref.eval["precision"][:, :, :, 0, -1]
    per_class = np.array(
        [np.mean(p[:, :, c][p[:, :, c] > -1]) if (p[:, :, c] > -1).any() else np.nan for c in range(p.shape[2])]
    )
    np.testing.assert_allclose(ours.per_class_ap(), per_class, rtol=0, atol=atol)
    return float(
        max(np.abs(ours.precision - ref.eval["precision"]).max(), np.abs(ours.recall - ref.eval["recall"]).max())
    )


def test_iou_and_giou_by_hand():
    a = np.array([[0, 0, 2, 2]], np.float32)
    b = np.array([[1, 1, 3, 3], [0, 0, 2, 2], [0, 4, 2, 6], [0, 0, 1, 1]], np.float32)
    # Overlap 1, union 4 + 4 - 1 = 7, hull 3 x 3 = 9; a copy; disjoint, hull 2 x 6 = 12, union 8; inside, 1 / 4.
    np.testing.assert_allclose(overlaps.box_iou(a, b), [[1 / 7, 1, 0, 1 / 4]], rtol=1e-12)
    giou = [[1 / 7 - (9 - 7) / 9, 1, 0 - (12 - 8) / 12, 1 / 4]]
    np.testing.assert_allclose(overlaps.generalized_box_iou(a, b), giou, rtol=1e-12)
    # Only the extent along each axis matters: rows and columns swapped give the same numbers.
    np.testing.assert_allclose(overlaps.box_iou(b[:, [1, 0, 3, 2]], a[:, [1, 0, 3, 2]]), overlaps.box_iou(b, a))


def _one_image(gt_boxes, gt_labels, det_boxes, det_scores, det_labels, crowd=None):
    gt = {"boxes": np.array(gt_boxes, np.float32), "labels": np.array(gt_labels)}
    if crowd is not None:
        gt["crowd"] = np.array(crowd)
    return [gt], [
        {"boxes": np.array(det_boxes, np.float32), "scores": np.array(det_scores), "labels": np.array(det_labels)}
    ]


def test_three_detections_ap_by_hand():
    # Two 40 x 40 objects (medium); detections: a hit (0.9), a miss (0.8), the second hit (0.7). All IoUs are 1 or 0.
    gts, dets = _one_image(
        [[0, 0, 40, 40], [100, 100, 140, 140]],
        [0, 0],
        [[0, 0, 40, 40], [200, 200, 240, 240], [100, 100, 140, 140]],
        [0.9, 0.8, 0.7],
        [0, 0, 0],
    )
    # Precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1; made non-increasing from the right: 1, 2/3, 2/3. The 51 recall
    # points 0, 0.01, ..., 0.5 read 1, the 50 points 0.51 ... 1 read 2/3.
    expected = (51 * 1 + 50 * 2 / 3) / 101
    ours = detection.coco_evaluate(gts, dets)
    for key in ("ap", "ap50", "ap75", "ap_medium"):
        assert ours.stats[key] == pytest.approx(expected, abs=1e-12)
    assert np.isnan(ours.stats["ap_small"]) and np.isnan(ours.stats["ap_large"])
    assert ours.stats["ar1"] == 0.5 and ours.stats["ar10"] == 1.0
    assert_equal_to_pycocotools(ours, coco_reference(gts, dets, 1), atol=0)
    th, precision, recall = detection.precision_recall_at_thresholds(gts, dets)
    np.testing.assert_allclose(th, [0.9, 0.8, 0.7])
    np.testing.assert_allclose(precision, [1, 1 / 2, 2 / 3])
    np.testing.assert_allclose(recall, [1 / 2, 1 / 2, 1])
    _, precision, recall = detection.precision_recall_at_thresholds(gts, dets, thresholds=[0.95, 0.75, 0.0])
    np.testing.assert_allclose(precision, [np.nan, 1 / 2, 2 / 3])
    np.testing.assert_allclose(recall, [0, 1 / 2, 1])


def test_a_crowd_region_absorbs_detections_and_counts_for_nothing():
    # A crowd region holds both 10 x 10 detections entirely (IoU = intersection / detection area = 1): neither is
    # a false positive, and the crowd is no object to find; the third detection finds the one real object.
    gts, dets = _one_image(
        [[0, 0, 100, 100], [200, 200, 220, 220]],
        [0, 0],
        [[10, 10, 20, 20], [30, 30, 40, 40], [200, 200, 220, 220]],
        [0.9, 0.8, 0.5],
        [0, 0, 0],
        crowd=[1, 0],
    )
    ours = detection.coco_evaluate(gts, dets)
    assert ours.stats["ap"] == pytest.approx(1.0, abs=1e-12) and ours.stats["ar100"] == 1.0
    assert_equal_to_pycocotools(ours, coco_reference(gts, dets, 1), atol=0)


@pytest.mark.parametrize("seed", range(6))
def test_equals_pycocotools_on_random_splits(seed):
    rng = np.random.default_rng(seed)
    num_classes = 3 + seed % 4
    gts, dets = random_split(rng, 50, num_classes, crowded=seed % 2 == 1)
    if seed % 3 == 2:  # COCO's area field, not the box, decides the size range
        for g in gts:
            g["area"] = rng.uniform(0, 12000, len(g["labels"]))
    # The split holds what the comparison is meant to cover.
    n_gt = np.array([len(g["labels"]) for g in gts])
    n_det = np.array([len(d["scores"]) for d in dets])
    assert (n_gt == 0).any() and (n_det == 0).any() and (n_gt > 0).any()
    assert any(np.asarray(g["crowd"]).any() for g in gts)
    scores = np.concatenate([d["scores"] for d in dets])
    assert len(np.unique(scores)) < len(scores)
    labels = np.concatenate([d["labels"] for d in dets])
    assert num_classes - 2 not in labels and num_classes - 1 in labels
    assert num_classes - 1 not in np.concatenate([g["labels"] for g in gts])
    ours = detection.coco_evaluate(gts, dets, num_classes=num_classes)
    assert np.isnan(ours.per_class_ap()[-1]) and ours.per_class_ap()[-2] == 0
    assert all(np.isfinite(ours.stats[k]) for k in ("ap_small", "ap_medium", "ap_large"))
    assert_equal_to_pycocotools(ours, coco_reference(gts, dets, num_classes))


def test_equals_pycocotools_with_other_thresholds_ranges_and_limits():
    rng = np.random.default_rng(7)
    gts, dets = random_split(rng, 40, 4, crowded=True)
    thresholds = np.array([0.3, 0.5, 0.7])
    ranges = {"all": (0.0, 1e10), "tiny": (0.0, 16.0**2), "rest": (16.0**2, 1e10)}
    max_dets = (2, 5, 20)
    ours = detection.coco_evaluate(gts, dets, iou_thresholds=thresholds, area_ranges=ranges, max_detections=max_dets)
    ref = coco_reference(
        gts,
        dets,
        4,
        iouThrs=thresholds,
        areaRng=[list(r) for r in ranges.values()],
        areaRngLbl=list(ranges),
        maxDets=list(max_dets),
    )
    np.testing.assert_allclose(ours.precision, ref.eval["precision"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.recall, ref.eval["recall"], rtol=0, atol=1e-12)


def test_empty_splits_and_images():
    empty_gt = {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, int)}
    empty_det = {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, int), "scores": np.zeros(0)}
    assert all(np.isnan(v) for v in detection.coco_evaluate([], [], num_classes=2).stats.values())
    gts, dets = _one_image([[0, 0, 10, 10]], [1], np.zeros((0, 4)), [], [])
    ours = detection.coco_evaluate([*gts, empty_gt], [*dets, empty_det], num_classes=3)
    assert ours.stats["ap"] == 0 and ours.stats["ar100"] == 0 and np.isnan(ours.stats["ap_large"])
    np.testing.assert_array_equal(ours.per_class_ap(), [np.nan, 0, np.nan])
    assert np.isnan(ours.pr_curves()[[0, 2]]).all() and (ours.pr_curves()[1] == 0).all()

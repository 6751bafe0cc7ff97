"""Instance-mask AP (``coco_evaluate(iou_type="segm")``): mask IoU by hand and against ``pycocotools.mask.iou``, an AP
worked by hand, and all of COCO's numbers equal to pycocotools' ``COCOeval(iouType="segm")`` on randomised splits
(several classes, empty images, images without detections, score ties, IoU ties, crowd masks, every size range)."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval

from mlcv.metrics import detection, overlaps
from tests.metrics.test_detection_metrics import assert_equal_to_pycocotools, run_cocoeval

SIZE = (120, 112)  # room for masks of every COCO size range: up to 13440 pixels, large from 9216


def rle(mask: np.ndarray) -> dict:
    return mask_utils.encode(np.asfortranarray(np.asarray(mask, np.uint8)))


def coco_segm_reference(gts, dets, num_classes: int, size=SIZE, **params) -> COCOeval:
    """pycocotools' ``segm`` evaluation of the same split: masks as RLE, ``area`` the mask's (or the given area).

    Ids start at 1 as in ``coco_reference``; ``params`` overrides ``COCOeval.params`` attributes."""
    images, anns, results = [], [], []
    for i, (g, d) in enumerate(zip(gts, dets, strict=True)):
        images.append({"id": i + 1, "height": size[0], "width": size[1]})
        crowd = np.asarray(g.get("crowd", np.zeros(len(g["labels"]))))
        for j, m in enumerate(overlaps.binarize(g["masks"])):
            r = rle(m)
            area = float(g["area"][j]) if "area" in g else float(mask_utils.area(r))
            anns.append(
                {"id": len(anns) + 1, "image_id": i + 1, "category_id": int(g["labels"][j]) + 1, "segmentation": r}
                | {"area": area, "iscrowd": int(crowd[j] > 0)}
            )
        for m, label, score in zip(overlaps.binarize(d["masks"]), d["labels"], d["scores"], strict=True):
            results.append(
                {"image_id": i + 1, "category_id": int(label) + 1, "score": float(score), "segmentation": rle(m)}
            )
    return run_cocoeval(images, anns, results, num_classes, "segm", **params)


def _shift(m: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``m`` moved by ``(dy, dx)`` pixels, zeros shifted in."""
    out = np.zeros_like(m)
    h, w = m.shape
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = m[
        max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)
    ]
    return out


def _blob(rng: np.random.Generator, size=SIZE) -> np.ndarray:
    """An ellipse of radii 1.5 to 70 px anywhere (cut by the border), sometimes ragged; now and then a 32 x 32 or
    96 x 96 square (areas on the range bounds), a rectangle of sides >= 90 px (large) or nothing at all."""
    h, w = size
    u = rng.random()
    m = np.zeros(size, bool)
    if u < 0.15:
        sh, sw = (int(rng.choice([32, 96])),) * 2 if u < 0.06 else rng.integers(90, [h + 1, w + 1])
        y, x = rng.integers(0, h - sh + 1), rng.integers(0, w - sw + 1)
        m[y : y + sh, x : x + sw] = True
        return m
    if u < 0.17:
        return m
    yy, xx = np.mgrid[:h, :w]
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    ry, rx = np.exp(rng.uniform(np.log(1.5), np.log(70), 2))
    m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    if rng.random() < 0.3:
        m &= rng.random(size) > 0.15
    return m


def _near(rng: np.random.Generator, m: np.ndarray) -> np.ndarray:
    """A detection of ``m``: shifted by up to 2 px, maybe grown or shrunk by a pixel, maybe with some of its pixels
    and its neighbours' flipped."""
    out = _shift(m, *rng.choice([-2, -1, 0, 0, 0, 1, 2], 2))
    u = rng.random()
    if u < 0.2:
        out = out | _shift(out, 1, 0) | _shift(out, 0, 1)
    elif u < 0.4:
        out = out & _shift(out, 1, 0) & _shift(out, 0, 1)
    if rng.random() < 0.3:
        out ^= (rng.random(m.shape) < 0.1) & (out | _shift(out, 1, 1))
    return out


def random_mask_split(rng: np.random.Generator, n_images: int, num_classes: int, size=SIZE, crowded: bool = False):
    """Ground truth and detections per image, with everything COCO's rules distinguish (as ``random_split``).

    Class ``C-1`` has detections but never ground truth, class ``C-2`` ground truth but never detections; scores are
    multiples of 0.1 (ties within and across images); some ground truth is duplicated (IoU ties), some is a crowd
    region; some images have no objects, some no detections; ``crowded`` puts more than 100 detections of one class
    on some images. Masks are bool, detections' sometimes probabilities (a pixel in when >= 0.5, 0.5 included).
    """
    gts, dets = [], []
    for _ in range(n_images):
        n = 0 if rng.random() < 0.15 else int(rng.integers(1, 9))
        masks = np.stack([_blob(rng, size) for _ in range(n)]) if n else np.zeros((0, *size), bool)
        labels = rng.integers(0, num_classes - 1, n)
        if n >= 2 and rng.random() < 0.3:
            masks[1], labels[1] = masks[0], labels[0]
        gts.append({"masks": masks, "labels": labels, "crowd": (rng.random(n) < 0.12).astype(np.float32)})
        k = 0 if rng.random() < 0.1 else int(rng.integers(1, 25))
        if crowded and rng.random() < 0.3:
            k = int(rng.integers(100, 130))
        near = (rng.random(k) < 0.7) & (n > 0)
        src = rng.integers(0, max(n, 1), k)
        det_masks = np.zeros((k, *size), bool)
        for row, (close, s) in enumerate(zip(near, src, strict=True)):
            det_masks[row] = _near(rng, masks[s]) if close else _blob(rng, size)
        guess = rng.integers(0, num_classes, k)
        det_labels = np.where(near & (rng.random(k) < 0.85), labels[src] if n else guess, guess)
        if crowded and k >= 100:
            det_labels[:] = 0
        det_labels[det_labels == num_classes - 2] = num_classes - 1
        scores = np.round(rng.random(k), 1).astype(np.float32)
        if rng.random() < 0.3:  # probabilities, 0.5 counting as in
            p = np.where(
                det_masks, rng.choice([0.5, 0.7, 1.0], det_masks.shape), rng.uniform(0, 0.499, det_masks.shape)
            )
            det_masks = p.astype(np.float32)
        dets.append({"masks": det_masks, "labels": det_labels, "scores": scores})
    return gts, dets


# Two 4 x 4 masks: a, the top two rows; b, the middle two columns. Intersection 2 x 2 = 4, union 8 + 8 - 4 = 12.
A = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]], bool)
B = np.array([[0, 1, 1, 0]] * 4, bool)


def test_mask_iou_by_hand():
    c = B.copy()
    c[3, 2] = False  # b less one pixel: 7 / 8
    empty = np.zeros((4, 4), bool)
    iou = overlaps.mask_iou(np.stack([A, c, empty]), np.stack([B, B, empty]), crowd=[0, 1, 0])
    # Against the crowd copy of b: intersection over the first mask's own area (4 / 8 for a, 7 / 7 for c).
    np.testing.assert_allclose(iou, [[1 / 3, 4 / 8, 0], [7 / 8, 1, 0], [0, 0, 0]], rtol=0, atol=1e-15)
    # Probabilities: a pixel is in at 0.5.
    np.testing.assert_allclose(overlaps.mask_iou((A * 0.5)[None], np.stack([A * 0.49, A])), [[0, 1]])
    assert overlaps.mask_iou(np.zeros((0, 4, 4)), B[None]).shape == (0, 1)
    assert overlaps.mask_iou(A[None], np.zeros((0, 4, 4))).shape == (1, 0)
    with pytest.raises(ValueError, match="4 x 4 masks with 4 x 5"):
        overlaps.mask_iou(A[None], np.zeros((1, 4, 5)))


@pytest.mark.parametrize("size", [(4, 4), (13, 7), (33, 65)])  # whole, part and many uint64 words a mask
def test_mask_iou_equals_pycocotools(size):
    rng = np.random.default_rng(sum(size))
    a = rng.random((6, *size)) < rng.uniform(0, 1, (6, 1, 1))
    b = np.concatenate([a[:2], rng.random((5, *size)) < rng.uniform(0, 1, (5, 1, 1))])
    a[0] = False  # an empty mask
    crowd = rng.random(len(b)) < 0.5
    ref = mask_utils.iou([rle(m) for m in a], [rle(m) for m in b], crowd.astype(np.uint8).tolist())
    np.testing.assert_array_equal(overlaps.mask_iou(a, b, crowd), ref)  # the same division: bit for bit
    packed = overlaps.PackedMasks.pack(a)
    np.testing.assert_array_equal(packed.unpack(), a)
    np.testing.assert_array_equal(overlaps.mask_iou(packed, overlaps.PackedMasks.pack(b), crowd), ref)


def test_two_detections_ap_by_hand():
    # One 8-pixel object (small), b. Detections: a (score 0.9, IoU 1/3, a false positive everywhere) and b less one
    # pixel (0.8, IoU 7/8: a hit at the thresholds 0.5 ... 0.85, a miss at 0.9 and 0.95).
    c = B.copy()
    c[3, 2] = False
    gts = [{"masks": B[None], "labels": np.array([0])}]
    dets = [{"masks": np.stack([A, c]), "scores": np.array([0.9, 0.8]), "labels": np.array([0, 0])}]
    ours = detection.coco_evaluate(gts, dets, iou_type="segm")
    # Where c hits: precision 0, 1/2 at recall 0, 1; made non-increasing, every recall point reads 1/2.
    assert ours.stats["ap"] == pytest.approx(8 / 10 * 0.5, abs=1e-12)
    assert ours.stats["ap50"] == ours.stats["ap75"] == pytest.approx(0.5, abs=1e-12)
    assert ours.stats["ap_small"] == ours.stats["ap"] and np.isnan(ours.stats["ap_medium"])
    assert ours.stats["ar1"] == 0 and ours.stats["ar100"] == pytest.approx(0.8)  # at 1: only a, the miss
    assert_equal_to_pycocotools(ours, coco_segm_reference(gts, dets, 1, size=(4, 4)), atol=0)
    # The same with packed masks; the box evaluation of these inputs is refused (no boxes).
    packed = [{**d, "masks": overlaps.PackedMasks.pack(d["masks"])} for d in dets]
    np.testing.assert_equal(detection.coco_evaluate(gts, packed, iou_type="segm").stats, ours.stats)
    # An image without either: its masks may come without a size.
    gts_e, dets_e = [*gts, {"masks": np.zeros(0), "labels": []}], [*dets, {"masks": [], "scores": [], "labels": []}]
    np.testing.assert_equal(detection.coco_evaluate(gts_e, dets_e, iou_type="segm").stats, ours.stats)
    with pytest.raises(KeyError, match="boxes"):
        detection.coco_evaluate(gts, dets)
    with pytest.raises(ValueError, match="iou_type"):
        detection.coco_evaluate(gts, dets, iou_type="keypoints")


def test_a_crowd_mask_absorbs_detections_and_one_image_size_is_required():
    crowd = np.zeros((20, 20), bool)
    crowd[:10] = True
    obj = np.zeros((20, 20), bool)
    obj[15:, 15:] = True
    parts = np.zeros((2, 20, 20), bool)
    parts[0, :3, :3] = parts[1, 5:9, 10:] = True  # inside the crowd: intersection over own area = 1
    gts = [{"masks": np.stack([crowd, obj]), "labels": np.array([0, 0]), "crowd": np.array([1, 0])}]
    dets = [{"masks": np.concatenate([parts, obj[None]]), "scores": np.array([0.9, 0.8, 0.5]), "labels": [0] * 3}]
    ours = detection.coco_evaluate(gts, dets, iou_type="segm")
    assert ours.stats["ap"] == pytest.approx(1.0, abs=1e-12) and ours.stats["ar100"] == 1.0
    assert_equal_to_pycocotools(ours, coco_segm_reference(gts, dets, 1, size=(20, 20)), atol=0)
    with pytest.raises(ValueError, match=r"image 0: .*\(20, 20\).*\(20, 21\)"):
        detection.coco_evaluate(gts, [dict(dets[0], masks=np.zeros((3, 20, 21)))], iou_type="segm")


@pytest.mark.parametrize("seed", range(5))
def test_equals_pycocotools_on_random_splits(seed):
    rng = np.random.default_rng(100 + seed)
    num_classes = 3 + seed % 3
    gts, dets = random_mask_split(rng, 30, num_classes, crowded=seed == 2)
    params, ranges = {}, detection.AREA_RANGES
    if seed == 3:  # COCO's area field, not the pixel count, decides the size range
        for g in gts:
            g["area"] = rng.uniform(0, 12000, len(g["labels"]))
    if seed == 4:  # other size ranges and max detections, given to both
        ranges = {"all": (0, 1e10), "tiny": (0, 100), "mid": (100, 2000), "big": (2000, 1e10)}
        params = {"areaRng": [list(r) for r in ranges.values()], "areaRngLbl": list(ranges)}
    # The split holds what the comparison is meant to cover.
    n_gt = np.array([len(g["labels"]) for g in gts])
    n_det = np.array([len(d["scores"]) for d in dets])
    assert (n_gt == 0).any() and (n_det == 0).any() and (n_gt > 0).any() and (n_det.max() > 100) == (seed == 2)
    assert any(np.asarray(g["crowd"]).any() for g in gts)
    scores = np.concatenate([d["scores"] for d in dets])
    assert len(np.unique(scores)) < len(scores)
    areas = np.concatenate([overlaps.binarize(g["masks"]).sum((1, 2)) for g in gts])
    assert (areas < 32**2).any() and ((areas >= 32**2) & (areas <= 96**2)).any() and (areas > 96**2).any()
    ours = detection.coco_evaluate(gts, dets, num_classes=num_classes, area_ranges=ranges, iou_type="segm")
    assert np.isnan(ours.per_class_ap()[-1]) and ours.per_class_ap()[-2] == 0
    assert (ours.recall[0, :, :, -1] > -1).any(0).all()  # every size range holds objects to find
    assert 0.05 < ours.stats["ap"] < 0.95  # neither trivially right nor trivially wrong
    assert_equal_to_pycocotools(ours, coco_segm_reference(gts, dets, num_classes, **params))
    th, precision, recall = detection.precision_recall_at_thresholds(gts, dets, iou_type="segm")
    assert len(th) == len(np.unique(scores)) and np.all((recall >= 0) & (recall <= 1))

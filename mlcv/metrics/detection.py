"""Detection metrics: box and mask IoU, box GIoU, precision and recall by confidence, and COCO's average precision
and recall of boxes and of instance masks.

Boxes follow the data contract (:mod:`mlcv.data.ops.boxes`): ``(ymin, xmin, ymax, xmax)`` in pixels, area
``(ymax - ymin) * (xmax - xmin)``, no ``+ 1``. A split is two equally long sequences of mappings, one an image:

- ground truth: ``"boxes"`` ``[N, 4]``, ``"labels"`` ``[N]`` (class ``0..C-1``), optionally ``"crowd"`` ``[N]``
  (non-zero: a crowd region, ignored as COCO's ``iscrowd``) and ``"area"`` ``[N]`` (the area that decides the
  size range, COCO's ``area`` field; the box area when absent);
- detections: ``"boxes"`` ``[K, 4]``, ``"scores"`` ``[K]``, ``"labels"`` ``[K]``.

For instance masks (``iou_type="segm"``) both sides carry ``"masks"`` instead of ``"boxes"``: ``[N, H, W]`` at the
image's size (bool, or values where a pixel is in the mask when >= 0.5), or a :class:`PackedMasks`; ground truth
and detections of one image must share ``H, W``. The IoU is then the masks' (:func:`mask_iou`) and an area is a
pixel count (ground truth's ``"area"``, when given, still decides its size range, as COCO's field does).

Either may be empty for an image. :func:`coco_evaluate` reproduces pycocotools' ``COCOeval`` (``iouType='bbox'``
and ``'segm'``) number for number; where pycocotools loops in Python over images x classes x size ranges x
detections, it matches all images and classes at once, one detection rank at a time (see :func:`_match`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import numpy as np

from mlcv.metrics import overlaps

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
AREA_RANGES = {"all": (0.0, 1e10), "small": (0.0, 32.0**2), "medium": (32.0**2, 96.0**2), "large": (96.0**2, 1e10)}
MAX_DETECTIONS = (1, 10, 100)
#: The twelve numbers of COCO's summary, in pycocotools' ``stats`` order.
STAT_NAMES = (
    *("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large"),
    *("ar1", "ar10", "ar100", "ar_small", "ar_medium", "ar_large"),
)
_EPS = np.spacing(1)  # pycocotools' guard in tp / (tp + fp + eps): precision 1 prints as 1 - 2e-16
IOU_TYPES = ("bbox", "segm")
IouType = Literal["bbox", "segm"]


def _flatten(items: Sequence[Mapping[str, np.ndarray]], keys: dict[str, tuple[type, tuple[int, ...]]], rows: str):
    """The per-image arrays concatenated (a key only if every image has it), plus each row's ``"image"`` index;
    ``rows`` (``"boxes"`` or ``"masks"``) counts each image's objects."""
    out = {}
    for key, (dtype, tail) in keys.items():
        if all(key in item for item in items):
            parts = [np.asarray(item[key], dtype).reshape(-1, *tail) for item in items]
            out[key] = np.concatenate(parts) if parts else np.zeros((0, *tail), dtype)
    if rows == "boxes":
        counts = [len(np.asarray(item["boxes"]).reshape(-1, 4)) for item in items]
    else:  # PackedMasks or None (see masks.as_packed)
        counts = [0 if item["masks"] is None else len(item["masks"]) for item in items]
    out["image"] = np.repeat(np.arange(len(items)), counts)
    for key, value in out.items():
        if len(value) != len(out["image"]):
            raise ValueError(f"'{key}' has {len(value)} rows in all, '{rows}' {len(out['image'])}: one per object")
    return out


@dataclasses.dataclass
class _Matching:
    """Detections (the top ``max_det`` of each image and class, in (image, class, score) order) and their matches."""

    det: dict[str, np.ndarray]  # image, labels, scores, index (row in the flat input), rank, area
    candidates: np.ndarray  # [Nc] detections with some ground truth above the lowest threshold
    match: np.ndarray  # [A, T, Nc] the ground-truth row each candidate matched, -1 for none
    gt_labels: np.ndarray  # [G]
    gt_ignore: np.ndarray  # [A, G] crowd or outside the size range
    det_outside: np.ndarray  # [A, D] the detection's own area outside the size range


PairIou = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _match(
    gt, det, pair_iou: PairIou, num_classes: int, thresholds: np.ndarray, ranges: np.ndarray, max_det: int
) -> _Matching:
    """COCO's greedy matching for every image, class, size range and IoU threshold at once.

    ``pair_iou(d, g)`` is the IoU of detection rows ``d`` with ground-truth rows ``g`` (row-aligned), boxes' or
    masks'; it is asked only for the pairs of one image and class among each image's top ``max_det``.

    Per image and class (COCOeval.evaluateImg), detections in decreasing score (ties in input order) each take the
    best still-free ground truth with IoU >= the threshold, a later one winning ties of IoU; a crowd region stays
    free for more. A free ground truth inside the size range is preferred to any ignored one (pycocotools sorts
    ignored ground truth last and stops at it once it holds a match). Only a detection of the same image and class
    can take a ground truth, so the detections of one rank never compete: the loop runs over ranks, each step over
    every image and class together, and only over detection-truth pairs above the lowest threshold.
    """
    keep = (det["labels"] >= 0) & (det["labels"] < num_classes)
    group = det["image"] * num_classes + det["labels"]
    order = np.lexsort((-det["scores"], group))
    order = order[keep[order]]
    group = group[order]
    first = np.r_[True, group[1:] != group[:-1]] if len(group) else np.zeros(0, bool)
    starts = np.flatnonzero(first)
    rank = np.arange(len(group)) - np.repeat(starts, np.diff(np.r_[starts, len(group)]))
    order, group, rank = order[rank < max_det], group[rank < max_det], rank[rank < max_det]
    dets = {"image": det["image"][order], "labels": det["labels"][order], "scores": det["scores"][order]}
    dets |= {"index": order, "rank": rank, "area": det["area"][order]}

    ggroup = gt["image"] * num_classes + gt["labels"]
    gorder = np.argsort(ggroup, kind="stable")  # within an image and class, input order decides IoU ties
    lo = np.searchsorted(ggroup[gorder], group, "left")
    count = np.searchsorted(ggroup[gorder], group, "right") - lo
    pair_det = np.repeat(np.arange(len(group)), count)
    pair_gt = gorder[np.arange(count.sum()) + np.repeat(lo - (np.cumsum(count) - count), count)]
    iou = pair_iou(order[pair_det], pair_gt)
    # pycocotools caps a threshold at 1 - 1e-10 so that IoU 1 still matches at threshold 1.
    thresholds = np.minimum(thresholds, 1 - 1e-10)
    above = iou >= thresholds.min()
    pair_det, pair_gt, iou = pair_det[above], pair_gt[above], iou[above]
    candidates, pair_cand = np.unique(pair_det, return_inverse=True)

    gt_ignore = gt["crowd"][None] | (gt["area"][None] < ranges[:, :1]) | (gt["area"][None] > ranges[:, 1:])
    ngt = len(gt["labels"])
    ignore = np.c_[gt_ignore, np.ones((len(ranges), 1), bool)]  # a last column for padding
    crowd = np.r_[gt["crowd"], False]
    taken = np.zeros((len(ranges), len(thresholds), ngt + 1), bool)
    match = np.full((len(ranges), len(thresholds), len(candidates)), -1, np.int64)
    by_rank = np.argsort(rank[pair_det], kind="stable")
    pair_rank = rank[pair_det][by_rank]
    bounds = np.flatnonzero(np.r_[True, pair_rank[1:] != pair_rank[:-1], True]) if len(by_rank) else [0]
    for s, e in zip(bounds[:-1], bounds[1:], strict=True):
        sel = by_rank[s:e]
        cand = pair_cand[sel]
        new_row = np.r_[True, cand[1:] != cand[:-1]]
        row = np.cumsum(new_row) - 1
        col = np.arange(e - s) - np.flatnonzero(new_row)[row]
        pad_gt = np.full((row[-1] + 1, col.max() + 1), ngt)
        pad_iou = np.full(pad_gt.shape, -np.inf)
        pad_gt[row, col], pad_iou[row, col] = pair_gt[sel], iou[sel]
        free = ~taken[:, :, pad_gt] | crowd[pad_gt]  # [A, T, n, P]
        ok = free & (pad_iou >= thresholds[:, None, None])
        ign = ignore[:, pad_gt][:, None]
        inside = ok & ~ign
        key = np.where(inside.any(-1, keepdims=True), np.where(inside, pad_iou, -1.0), np.where(ok, pad_iou, -1.0))
        best = key.shape[-1] - 1 - np.argmax(key[..., ::-1], -1)  # the last of equal IoUs
        found = np.take_along_axis(key, best[..., None], -1)[..., 0] >= 0
        m = np.where(found, pad_gt[np.arange(len(best[0, 0])), best], -1)
        a, t, _ = np.nonzero(found)
        taken[a, t, m[found]] = True
        match[:, :, cand[new_row]] = m
    outside = (dets["area"][None] < ranges[:, :1]) | (dets["area"][None] > ranges[:, 1:])
    return _Matching(dets, candidates, match, gt["labels"], gt_ignore, outside)


def _first_reaching(npig: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``[K, R]``: the smallest count n >= 1 of true positives whose recall ``n / npig`` (float64, as pycocotools
    divides) reaches each recall point: where ``searchsorted(recall, point, 'left')`` lands in pycocotools."""
    npig = np.maximum(npig, 1)[:, None]
    n = np.maximum(np.ceil(points[None] * npig).astype(np.int64), 1)
    for _ in range(4):  # the product above is within one of the answer; settle it on the exact division
        n = np.where((n > 1) & ((n - 1) / npig >= points), n - 1, n)
        n = np.where(n / npig < points, n + 1, n)
    return n


def _precision_at_points(pr: np.ndarray, seg: np.ndarray, nseg: int, start: np.ndarray) -> np.ndarray:
    """``[S, R]``: per segment (the true positives of one class at one threshold, in rank order, their precisions
    ``pr``), the highest precision at or after the ``start[s, r]``-th true positive (1-based), 0 past the last.

    That is pycocotools' precision made non-increasing from the right and sampled, without walking each curve: a
    false or ignored detection never raises the precision, so the maximum over the true positives is the maximum.
    """
    total = np.bincount(seg, minlength=nseg)
    offset = np.cumsum(total) - total
    valid = start <= total[:, None]
    idx = np.where(valid, offset[:, None] + start - 1, (offset + total)[:, None])
    # Each segment's own start first, so that no piece runs into the next segment; the pieces between sampled
    # starts are reduced once, then the running maximum from the right runs over the R pieces.
    idx = np.c_[offset, idx].ravel()
    piece = np.maximum.reduceat(np.r_[pr, 0.0], idx).reshape(nseg, -1)[:, 1:] if nseg else start * 0.0
    piece = np.where(valid, piece, 0.0)
    return np.maximum.accumulate(piece[:, ::-1], axis=1)[:, ::-1]


@dataclasses.dataclass(frozen=True)
class CocoEvaluation:
    """What :func:`coco_evaluate` returns.

    Attributes:
      stats: :data:`STAT_NAMES` -> value: pycocotools' ``stats``, NaN where it has -1 (no ground truth to find).
      precision: ``[T, R, K, A, M]``, pycocotools' ``eval['precision']``: -1 for a class without ground truth
        (outside the ignored ones) in that size range.
      recall: ``[T, K, A, M]``, pycocotools' ``eval['recall']``, -1 likewise.
    """

    stats: dict[str, float]
    precision: np.ndarray
    recall: np.ndarray
    iou_thresholds: np.ndarray
    recall_points: np.ndarray
    area_names: tuple[str, ...]
    max_detections: tuple[int, ...]

    def per_class_ap(self) -> np.ndarray:
        """``[K]``: AP@[.5:.95] of each class (all sizes, the largest max_detections); NaN without ground truth."""
        p = self.precision[:, :, :, self.area_names.index("all"), -1]
        return np.where(p[0, 0] > -1, p.mean((0, 1)), np.nan)

    def pr_curves(self, iou_threshold: float = 0.5) -> np.ndarray:
        """``[K, R]``: each class's interpolated precision at :attr:`recall_points` (all sizes, largest
        max_detections) at the evaluated IoU threshold nearest ``iou_threshold``; NaN rows without ground truth."""
        t = int(np.argmin(np.abs(self.iou_thresholds - iou_threshold)))
        p = self.precision[t, :, :, self.area_names.index("all"), -1].T
        return np.where(p > -1, p, np.nan)


def _mean_defined(s: np.ndarray) -> float:
    return float(np.mean(s[s > -1])) if (s > -1).any() else float("nan")


def _summarize(precision, recall, thresholds, area_names, max_dets) -> dict[str, float]:
    """pycocotools' ``summarize``: means over the defined entries. Where pycocotools reads ``maxDets`` 100 (AP)
    or its third entry (AP at 0.5, 0.75 and by size, AR by size) this reads the largest of ``max_dets``."""

    def area(name):
        return [area_names.index(name)] if name in area_names else []

    def at(iou):
        return np.flatnonzero(np.isclose(thresholds, iou, rtol=0, atol=1e-12))

    sizes, p, r = ("small", "medium", "large"), precision, recall
    out = {"ap": _mean_defined(p[:, :, :, area("all"), -1])}
    out |= {f"ap{round(100 * t)}": _mean_defined(p[at(t)][:, :, :, area("all"), -1]) for t in (0.5, 0.75)}
    out |= {f"ap_{size}": _mean_defined(p[:, :, :, area(size), -1]) for size in sizes}
    ars = zip(("ar1", "ar10", "ar100"), (0, min(1, len(max_dets) - 1), -1), strict=True)
    out |= {name: _mean_defined(r[:, :, area("all"), m]) for name, m in ars}
    return out | {f"ar_{size}": _mean_defined(r[:, :, area(size), -1]) for size in sizes}


_GT_KEYS = {"labels": (np.int64, ()), "crowd": (bool, ()), "area": (np.float64, ())}
_DET_KEYS = {"scores": (np.float64, ()), "labels": (np.int64, ())}
_BOX_KEY = {"boxes": (np.float64, (4,))}


def _prepare(ground_truth, detections, num_classes, iou_type: IouType):
    """Flat arrays of the split, labels outside ``0..num_classes-1`` left out (pycocotools knows no such class), and
    the pairwise IoU that :func:`_match` asks for. Both sides get ``"area"``, the detections' always their own."""
    if len(ground_truth) != len(detections):
        raise ValueError(f"{len(ground_truth)} images of ground truth but {len(detections)} of detections")
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    rows, extra = ("boxes", _BOX_KEY) if iou_type == "bbox" else ("masks", {})
    if iou_type == "segm":  # packed once: 1 bit a pixel from here on
        ground_truth = [{**g, "masks": overlaps.as_packed(g["masks"])} for g in ground_truth]
        detections = [{**d, "masks": overlaps.as_packed(d["masks"])} for d in detections]
    gt, det = _flatten(ground_truth, _GT_KEYS | extra, rows), _flatten(detections, _DET_KEYS | extra, rows)
    gt.setdefault("crowd", np.zeros(len(gt["image"]), bool))  # optional keys missing for some image: for all
    if iou_type == "bbox":
        gt.setdefault("area", overlaps.box_areas(gt["boxes"]))
        det["area"] = overlaps.box_areas(det["boxes"])
    else:
        gt["words"], det["words"] = overlaps.split_words(ground_truth, detections)
        gt["pixels"], det["area"] = overlaps.popcount(gt["words"]), overlaps.popcount(det["words"])
        gt.setdefault("area", gt["pixels"].astype(np.float64))
    if num_classes is None:
        num_classes = int(max(gt["labels"].max(initial=-1), det["labels"].max(initial=-1))) + 1
    known = (gt["labels"] >= 0) & (gt["labels"] < num_classes)  # detections are filtered in _match
    gt = {k: v[known] for k, v in gt.items()}

    def pair_iou(d: np.ndarray, g: np.ndarray) -> np.ndarray:
        if iou_type == "bbox":
            return overlaps.box_pair_iou(det["boxes"][d], gt["boxes"][g], gt["crowd"][g])
        inter = overlaps.pair_intersections(det["words"], gt["words"], d, g)
        return overlaps.pair_iou(inter, det["area"][d], gt["pixels"][g], gt["crowd"][g])

    return gt, det, num_classes, pair_iou


def coco_evaluate(
    ground_truth: Sequence[Mapping[str, np.ndarray]],
    detections: Sequence[Mapping[str, np.ndarray]],
    *,
    num_classes: int | None = None,
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
    area_ranges: Mapping[str, tuple[float, float]] = AREA_RANGES,
    max_detections: Sequence[int] = MAX_DETECTIONS,
    recall_points: Sequence[float] = RECALL_POINTS,
    iou_type: IouType = "bbox",
) -> CocoEvaluation:
    """COCO's AP and AR: pycocotools' ``COCOeval`` ``evaluate``, ``accumulate``, ``summarize``, of boxes
    (``iou_type="bbox"``) or of instance masks (``"segm"``: masks instead of boxes, see the module's docstring).

    Same definitions, to the last bit on the tests' data: per image and class, greedy matching as :func:`_match`;
    ground truth ignored when crowd or outside the size range (by its ``area``, bounds inclusive), detections
    ignored when matched to ignored ground truth or unmatched with an area (the box's, or the mask's pixel count)
    outside the range; per class, the top ``m`` detections of each image pooled in image order and stably sorted by
    score; precision ``tp / (tp + fp + eps)`` made non-increasing from the right and read at the first detection
    whose recall ``tp / npig`` reaches each recall point (0 past the last), recall the final ``tp / npig``.

    Classes are ``0..num_classes-1`` (by default one past the largest label seen); boxes of other labels are
    dropped, as pycocotools drops categories absent from the ground truth file. Departures: ``stats`` holds NaN
    where pycocotools has -1; with ``max_detections`` other than (1, 10, 100) AP and the size-range ARs read the
    largest value (pycocotools reads 100 or the third); AP50 and AP75 find their threshold to 1e-12 (pycocotools:
    exactly, -1 when absent).
    """
    gt, det, num_classes, pair_iou = _prepare(ground_truth, detections, num_classes, iou_type)
    thresholds = np.asarray(iou_thresholds, np.float64)
    points = np.asarray(recall_points, np.float64)
    if np.any(np.diff(points) < 0):
        raise ValueError("recall_points must be increasing")
    names = tuple(area_ranges)
    ranges = np.array([area_ranges[n] for n in names], np.float64).reshape(-1, 2)
    max_dets = tuple(sorted(int(m) for m in max_detections))
    mt = _match(gt, det, pair_iou, num_classes, thresholds, ranges, max_dets[-1])
    k, nt, na, nm, nr = num_classes, len(thresholds), len(names), len(max_dets), len(points)
    precision = -np.ones((nt, nr, k, na, nm))
    recall = -np.ones((nt, k, na, nm))

    d = mt.det
    # Accumulation order: by class, then score (stable over image, then input order, as pycocotools' concatenation).
    perm = np.lexsort((d["index"], -d["scores"], d["labels"]))
    position = np.empty_like(perm)
    position[perm] = np.arange(len(perm))
    cls_start = np.searchsorted(d["labels"][perm], np.arange(k + 1))
    # Only detections that match somewhere need more than the unmatched rule; usually a fraction of the candidates.
    hit = np.flatnonzero((mt.match >= 0).any((0, 1)))
    corder = hit[np.argsort(position[mt.candidates[hit]])]
    cand = mt.candidates[corder]
    cpos, clabel, crank = position[cand], d["labels"][cand], d["rank"][cand]
    ccls_start = np.searchsorted(clabel, np.arange(k))
    rank_sorted = d["rank"][perm]
    for a in range(na):
        npig = np.bincount(mt.gt_labels[~mt.gt_ignore[a]], minlength=k)[:k]
        first_n = _first_reaching(npig, points)  # [K, R]
        match = mt.match[a][:, corder]  # [T, Nc]
        matched = match >= 0
        inc_if_matched = matched & ~mt.gt_ignore[a][np.maximum(match, 0)]
        cin = ~mt.det_outside[a][cand]
        inside_sorted = ~mt.det_outside[a][perm]
        for mi, m in enumerate(max_dets):
            # Counted detections (tp + fp) up to each candidate: the unmatched-detection rule over all detections,
            # corrected at the candidates, where a match decides instead.
            counted = (rank_sorted < m) & inside_sorted
            cum = np.r_[0, np.cumsum(counted)]
            top = crank < m
            inc = top & np.where(matched, inc_if_matched, cin)
            tp = inc & matched
            delta = np.cumsum(inc.astype(np.int64) - (top & cin), axis=1)
            delta0 = np.c_[np.zeros((nt, 1), np.int64), delta]
            ctp = np.c_[np.zeros((nt, 1), np.int64), np.cumsum(tp, axis=1)]
            n_seen = cum[cpos + 1] - cum[cls_start[clabel]] + delta - delta0[:, ccls_start[clabel]]
            t_idx, j = np.nonzero(tp)
            n_tp = (ctp[t_idx, j + 1] - ctp[t_idx, ccls_start[clabel[j]]]).astype(np.float64)
            pr = n_tp / (n_seen[t_idx, j].astype(np.float64) + _EPS)
            seg = t_idx * k + clabel[j]
            q = _precision_at_points(pr, seg, nt * k, np.tile(first_n, (nt, 1))).reshape(nt, k, nr)
            defined = npig > 0
            precision[:, :, defined, a, mi] = q.transpose(0, 2, 1)[:, :, defined]
            n_total = np.bincount(seg, minlength=nt * k).reshape(nt, k)
            recall[:, defined, a, mi] = n_total[:, defined] / npig[defined]
    stats = _summarize(precision, recall, thresholds, names, max_dets)
    return CocoEvaluation(stats, precision, recall, thresholds, points, names, max_dets)


def precision_recall_at_thresholds(
    ground_truth: Sequence[Mapping[str, np.ndarray]],
    detections: Sequence[Mapping[str, np.ndarray]],
    *,
    iou_threshold: float = 0.5,
    thresholds: Sequence[float] | None = None,
    num_classes: int | None = None,
    max_detections: int = 100,
    iou_type: IouType = "bbox",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall of the detections with score >= each confidence threshold, all classes pooled.

    Matching is COCO's (:func:`coco_evaluate`, one IoU threshold, all sizes, the top ``max_detections`` of each
    image and class; box or mask IoU by ``iou_type``): greedy by score per image and class, crowd ground truth and
    the detections matched to it left out. Returns ``(thresholds, precision, recall)``; thresholds default to the
    distinct scores, decreasing. Precision is NaN where no detection passes, recall NaN without ground truth.
    Unlike the PR curve of AP, precision is not made monotone: a threshold keeps exactly the detections at or
    above it.
    """
    gt, det, num_classes, pair_iou = _prepare(ground_truth, detections, num_classes, iou_type)
    ranges = np.array([AREA_RANGES["all"]])
    mt = _match(gt, det, pair_iou, num_classes, np.array([iou_threshold], np.float64), ranges, max_detections)
    scores = mt.det["scores"]
    ignored = mt.det_outside[0].copy()
    positive = np.zeros(len(scores), bool)
    m = mt.match[0, 0]
    ignored[mt.candidates] = np.where(m >= 0, mt.gt_ignore[0][np.maximum(m, 0)], ignored[mt.candidates])
    positive[mt.candidates] = m >= 0
    scores, positive = scores[~ignored], positive[~ignored]
    order = np.argsort(-scores, kind="stable")
    scores, tp = scores[order], np.cumsum(positive[order])
    th = np.unique(scores)[::-1] if thresholds is None else np.asarray(thresholds, np.float64)
    n = np.searchsorted(-scores, -th, side="right")  # detections with score >= each threshold
    tp_at = np.where(n > 0, tp[np.maximum(n - 1, 0)] if len(tp) else 0, 0)
    npig = int((~mt.gt_ignore[0]).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return th, np.where(n > 0, tp_at / np.maximum(n, 1), np.nan), tp_at / npig if npig else np.full(len(th), np.nan)

"""The overlaps that COCO's evaluation matches by: box IoU and GIoU, and instance-mask IoU (``bbox`` and ``segm``).

:mod:`mlcv.metrics.detection` matches boxes and masks through one code path; this module holds what differs:
the IoU of boxes (pycocotools' ``bbIou`` arithmetic), and for masks :class:`PackedMasks` (one bit a pixel, what
the ``mask_detection`` evaluator keeps on the host), the pixel counts of pairs by popcount, and their IoU with
COCO's crowd rule (``maskUtils.iou``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from mlcv.ops import boxes as xy_boxes


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` ``[N, 4]`` with every box of ``b`` ``[M, 4]``: ``[N, M]`` float64.

    IoU does not depend on which axis comes first, so :func:`mlcv.ops.boxes.iou`, written for
    ``(x0, y0, x1, y1)``, serves ``(y0, x0, y1, x1)`` boxes unchanged. Two empty boxes have IoU 0.
    """
    return xy_boxes.iou(a, b)


def generalized_box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """GIoU of every box of ``a`` ``[N, 4]`` with every box of ``b`` ``[M, 4]``: ``[N, M]`` in ``[-1, 1]``.

    ``GIoU = IoU - (|H| - |A u B|) / |H|``, with ``H`` the smallest box enclosing both (Rezatofighi et al., 2019).
    Where ``H`` is empty (two empty boxes at one point) it is the IoU, 0.
    """
    a = np.asarray(a, np.float64).reshape(-1, 4)[:, None]
    b = np.asarray(b, np.float64).reshape(-1, 4)[None]
    inter = np.prod(np.clip(np.minimum(a[..., 2:], b[..., 2:]) - np.maximum(a[..., :2], b[..., :2]), 0, None), -1)
    union = xy_boxes.area(a) + xy_boxes.area(b) - inter
    hull = np.prod(np.clip(np.maximum(a[..., 2:], b[..., 2:]) - np.minimum(a[..., :2], b[..., :2]), 0, None), -1)
    iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return np.where(hull > 0, iou - (hull - union) / np.where(hull > 0, hull, 1.0), iou)


def box_areas(boxes: np.ndarray) -> np.ndarray:  # as pycocotools from [x, y, w, h]: w * h
    return (boxes[:, 3] - boxes[:, 1]) * (boxes[:, 2] - boxes[:, 0])


def box_pair_iou(d: np.ndarray, g: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU of row-aligned pairs, against a crowd region ``intersection / detection area`` as COCO's.

    The arithmetic follows pycocotools' ``bbIou`` on ``[x, y, w, h]`` (right edge ``x + w``, union
    ``(area_d + area_g) - intersection``), so that IoUs at a threshold compare identically.
    """
    dh, dw, gh, gw = d[:, 2] - d[:, 0], d[:, 3] - d[:, 1], g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]
    iw = np.minimum(d[:, 1] + dw, g[:, 1] + gw) - np.maximum(d[:, 1], g[:, 1])
    ih = np.minimum(d[:, 0] + dh, g[:, 0] + gh) - np.maximum(d[:, 0], g[:, 0])
    overlap = (iw > 0) & (ih > 0)
    inter = np.where(overlap, iw * ih, 0.0)
    union = np.where(crowd, dw * dh, dw * dh + gw * gh - inter)
    return np.where(overlap, inter / np.where(overlap, union, 1.0), 0.0)


def binarize(masks: np.ndarray) -> np.ndarray:
    """Masks as bool: a bool array as it is, any other dtype (probabilities, 0/1 integers) as ``>= 0.5``."""
    m = np.asarray(masks)
    return m if m.dtype == bool else m >= 0.5


@dataclasses.dataclass(frozen=True)
class PackedMasks:
    """Binary masks ``[N, H, W]`` at one bit a pixel, eight times smaller than bool.

    ``bits`` ``[N, ceil(H * W / 8)]`` uint8 is ``np.packbits`` of each mask's pixels in row-major order (bit order
    "big", zeros after the last pixel), what ``jnp.packbits`` gives on a device too; ``shape`` is ``(H, W)``.
    """

    bits: np.ndarray
    shape: tuple[int, int]

    def __post_init__(self):
        h, w = (int(v) for v in self.shape)
        bits = np.asarray(self.bits)
        if bits.dtype != np.uint8 or bits.ndim != 2 or bits.shape[1] != -(-h * w // 8):
            raise ValueError(
                f"PackedMasks of {h} x {w} masks need bits [N, {-(-h * w // 8)}] uint8, got {bits.shape} {bits.dtype}"
            )
        object.__setattr__(self, "bits", bits)
        object.__setattr__(self, "shape", (h, w))

    @classmethod
    def pack(cls, masks: np.ndarray) -> PackedMasks:
        """Packs ``[N, H, W]`` masks (bool, or a pixel in when >= 0.5)."""
        m = binarize(masks)
        if m.ndim != 3:
            raise ValueError(f"masks must be [N, H, W], got shape {m.shape}")
        return cls(np.packbits(m.reshape(len(m), m.shape[1] * m.shape[2]), axis=-1), m.shape[1:])

    def __len__(self) -> int:
        return len(self.bits)

    def unpack(self) -> np.ndarray:
        """The masks, ``[N, H, W]`` bool."""
        h, w = self.shape
        return np.unpackbits(self.bits, axis=-1, count=h * w).astype(bool).reshape(-1, h, w)


def as_packed(masks: np.ndarray | PackedMasks) -> PackedMasks | None:
    """A :class:`PackedMasks`, or None for an empty input whose image size is unknown (e.g. ``np.zeros(0)``)."""
    if isinstance(masks, PackedMasks):
        return masks
    m = np.asarray(masks)
    return None if m.size == 0 and m.ndim != 3 else PackedMasks.pack(m)


def words(packed: Sequence[PackedMasks | None]) -> np.ndarray:
    """Every mask a row of uint64 words, zero-padded to one width: ``[N, W]`` (popcount works 64 pixels at a time)."""
    n = sum(len(p) for p in packed if p is not None)
    width = max((-(-p.bits.shape[1] // 8) for p in packed if p is not None), default=0)
    out = np.zeros((n, 8 * width), np.uint8)
    row = 0
    for p in packed:
        if p is not None:
            out[row : row + len(p), : p.bits.shape[1]] = p.bits
            row += len(p)
    return out.view(np.uint64)


def popcount(words: np.ndarray) -> np.ndarray:
    return np.bitwise_count(words).sum(-1, dtype=np.int64)


def pair_intersections(a: np.ndarray, b: np.ndarray, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """``[P]`` int64: pixels in both row ``ia[p]`` of ``a`` and row ``ib[p]`` of ``b`` (packed words), in chunks
    of about 16 MB so that memory stays flat however many pairs there are."""
    out = np.zeros(len(ia), np.int64)
    step = max(1, (1 << 21) // max(a.shape[1], 1))
    for s in range(0, len(ia), step):
        out[s : s + step] = popcount(a[ia[s : s + step]] & b[ib[s : s + step]])
    return out


def pair_iou(inter: np.ndarray, area_d: np.ndarray, area_g: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU from pixel counts as pycocotools' ``rleIou``: ``i / u`` in float64, ``u`` the detection's own area
    against a crowd region, 0 without intersection (so two empty masks have IoU 0)."""
    union = np.where(crowd, area_d, area_d + area_g - inter)
    return np.where(inter > 0, inter / np.maximum(union, 1), 0.0)


def mask_iou(a: np.ndarray | PackedMasks, b: np.ndarray | PackedMasks, crowd: np.ndarray | None = None) -> np.ndarray:
    """IoU of every mask of ``a`` ``[N, H, W]`` with every mask of ``b`` ``[M, H, W]``: ``[N, M]`` float64.

    pycocotools' ``maskUtils.iou(a, b, crowd)``: where ``crowd[m]`` is non-zero, intersection over the area of the
    ``a`` mask instead of the union. Masks are bool, or a pixel in when >= 0.5, or :class:`PackedMasks`.

    The intersections are popcounts (``np.bitwise_count``) of the AND of bit-packed masks, 64 pixels a word, for
    only the pairs asked for (:func:`coco_evaluate` asks for those of one image and class), in integers, so exact.
    A matrix product of unpacked float32 masks per image would read 32 times the bytes, unpack what the mask
    evaluator keeps packed, and compute every pair of an image, classes apart: on 500 images x 100 detections x
    8 objects of 96 x 96 pixels (2-core CPU) the popcounts take 0.2 s, the products 3 s.
    """
    pa, pb = PackedMasks.pack(a) if not isinstance(a, PackedMasks) else a, as_packed(b)
    if pb is None:
        pb = PackedMasks(np.zeros((0, -(-pa.shape[0] * pa.shape[1] // 8)), np.uint8), pa.shape)
    if pa.shape != pb.shape:
        raise ValueError(f"mask_iou of {pa.shape[0]} x {pa.shape[1]} masks with {pb.shape[0]} x {pb.shape[1]} masks")
    wa, wb = words([pa]), words([pb])
    ia, ib = (g.ravel() for g in np.meshgrid(np.arange(len(pa)), np.arange(len(pb)), indexing="ij"))
    crowd = np.zeros(len(pb), bool) if crowd is None else np.asarray(crowd).reshape(-1) != 0
    iou = pair_iou(pair_intersections(wa, wb, ia, ib), popcount(wa)[ia], popcount(wb)[ib], crowd[ib])
    return iou.reshape(len(pa), len(pb))


def split_words(ground_truth, detections) -> tuple[np.ndarray, np.ndarray]:
    """Both sides' packed masks as words (:func:`words`), after checking that each image's sides agree on H, W."""
    gts, dets = [g["masks"] for g in ground_truth], [d["masks"] for d in detections]
    for i, (g, d) in enumerate(zip(gts, dets, strict=True)):
        if g is not None and d is not None and len(g) and len(d) and g.shape != d.shape:
            raise ValueError(f"image {i}: ground-truth masks are {g.shape}, detected masks {d.shape}: one image size")
    return words(gts), words(dets)

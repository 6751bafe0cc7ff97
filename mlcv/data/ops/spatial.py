"""Spatial transforms of a whole example: every dense key and the boxes move together.

The four primitives here (``flip``, ``crop``, ``resize``, ``rotate``) are what the
geometric ops of :mod:`mlcv.data.ops.geometric` compose. Per key:

- ``image``, ``image_right``, ``image_next``: bilinear (the ``image_fns`` helpers,
  so an image-only example gives exactly what those give); padding 0. Every view
  gets the same transform (a stereo ``flip_lr`` aside, below).
- ``masks`` ``[N, H, W]``, ``segmentation``, ``depth``, ``disparity``,
  ``disparity_right``, ``disparity_mask``, ``disparity_right_mask``,
  ``occlusion``, ``occlusion_right``, ``flow``, ``flow_mask``: nearest
  neighbour, so labels are never blended and a depth, disparity or flow is never
  averaged across an object edge into a value that belongs to neither side.
  Padding: 0 (0 depth / disparity / flow / mask = no data; areas padded in are
  not occluded, they are not valid either), ``segmentation`` takes ``seg_fill``
  (default 255, the usual "ignore" label).
- ``disparity`` values are x-distances in pixels, so a resize scales them by
  ``new_w / old_w``; a vertical flip or a crop keeps them.
- ``flow`` ``[H, W, 2]`` holds (dx, dy) in pixels: a resize scales dx by
  ``new_w / old_w`` and dy by ``new_h / old_h``; a left-right flip negates dx, an
  upside-down flip dy; a crop keeps both; a rotation rotates the vectors with the
  frames. A match that a crop moves outside the frame keeps its vector and its
  mask (likewise disparities and occlusions: they are not recomputed).
- ``focal_px`` (a 0-d calibration scalar): scaled by ``new_w / old_w`` on a
  resize, as disparities, so that depth ``baseline * focal_px / disparity`` is
  kept; crops, flips and padding keep it, and ``baseline`` is never moved.
- ``boxes``: transformed geometrically, clipped, empty ones dropped with their
  rows (``boxes.set_boxes``); a ``box_area`` row scales with its box.
- ``proposals`` (the ``selective_search`` op's): like boxes, except that an empty one becomes a zero row with
  ``proposal_mask`` 0 in place (``proposals.set_proposals``).

Nearest and bilinear sampling share the half-pixel geometry: pixel ``i``
spans ``[i, i + 1)`` and output pixel centres map to input positions by the
same continuous transform as the boxes.

A stereo pair (``image_right`` present) moves both views the same way,
except that ``flip_lr`` swaps them (see ``flip``) and ``rotate`` refuses
(rows of the two views would no longer be epipolar lines). A frame pair
(``image_next``) moves both frames the same way, flips included.

``size`` checks that every view and dense key has the image's size
(``checks.check_sizes``) before any op moves them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from mlcv.data.ops.boxes import BOX_ROW_KEYS, flip_boxes, rotate_boxes, set_boxes, shift_scale_boxes
from mlcv.data.ops.checks import check_sizes
from mlcv.data.ops.image_fns import resize_image, rotate_image
from mlcv.data.ops.proposals import PROPOSAL_KEYS, set_proposals
from mlcv.data.ops.registry import Example

SEG_FILL = 255


class DenseKey(NamedTuple):
    """How one dense key moves: bilinear or nearest, with a leading instance axis or not, and whether its values
    are x-distances (disparity) or (dx, dy) vectors (flow)."""

    linear: bool = False
    stacked: bool = False
    disparity: bool = False
    flow: bool = False


DENSE_KEYS: dict[str, DenseKey] = {
    "image": DenseKey(linear=True),
    "image_right": DenseKey(linear=True),
    "image_next": DenseKey(linear=True),
    "masks": DenseKey(stacked=True),
    "segmentation": DenseKey(),
    "depth": DenseKey(),
    "disparity": DenseKey(disparity=True),
    "disparity_right": DenseKey(disparity=True),
    "disparity_mask": DenseKey(),
    "disparity_right_mask": DenseKey(),
    "occlusion": DenseKey(),
    "occlusion_right": DenseKey(),
    "flow": DenseKey(flow=True),
    "flow_mask": DenseKey(),
}
# Keys a stereo flip swaps: the left view's key and the right view's.
RIGHT_VIEW = {
    "image": "image_right",
    "disparity": "disparity_right",
    "disparity_mask": "disparity_right_mask",
    "occlusion": "occlusion_right",
}
STEREO_KEYS = tuple(k for pair in RIGHT_VIEW.items() for k in pair if k != "image")
# Calibration scalars a resize rescales (baseline, in metres, never moves).
CALIBRATION_KEYS = ("focal_px",)
# Annotations of the left view alone: a stereo flip_lr makes the right view the new left, which they do not describe.
LEFT_ONLY_KEYS = ("boxes", "box_labels", "box_mask", "masks", "segmentation", "depth", *PROPOSAL_KEYS)
MOVED_KEYS = (
    *DENSE_KEYS,
    *(k for k in BOX_ROW_KEYS if k not in DENSE_KEYS),
    *PROPOSAL_KEYS,
    *CALIBRATION_KEYS,
)


def size(ex: Example) -> tuple[int, int]:
    """``(height, width)`` of the example's image (or, without one, of its first dense key).

    Raises ValueError naming the key if a view or dense annotation has another size (``checks.check_sizes``).
    """
    if "image" in ex:
        check_sizes(ex)
        shape = np.shape(ex["image"])
        return shape[0], shape[1]
    for key, spec in DENSE_KEYS.items():
        if key in ex:
            shape = np.shape(ex[key])
            return (shape[1], shape[2]) if spec.stacked else (shape[0], shape[1])
    raise ValueError(f"example has no image-like key to move; it has {sorted(ex)}")


def _per_key(
    ex: Example, fn: Callable[[np.ndarray, DenseKey, float], np.ndarray], seg_fill: float = SEG_FILL
) -> Example:
    """``ex`` with ``fn(array, spec, fill)`` applied to each dense key present; spatial axes come first."""
    out = dict(ex)
    for key, spec in DENSE_KEYS.items():
        if key not in ex:
            continue
        a = np.asarray(ex[key])
        if spec.stacked:
            a = np.moveaxis(a, 0, -1)
        res = fn(a, spec, seg_fill if key == "segmentation" else 0)
        out[key] = np.ascontiguousarray(np.moveaxis(res, -1, 0)) if spec.stacked else res
    return out


def check_flip_lr(ex: Example) -> None:
    """Raises ValueError if ``flip(ex, axis=1)`` cannot keep the example's stereo geometry."""
    if "image_right" not in ex:
        if ex.keys().isdisjoint(STEREO_KEYS):  # the common case, in C
            return
        stereo = [k for k in STEREO_KEYS if k in ex]
        if stereo:
            raise ValueError(
                f"flip_lr: {stereo} without 'image_right': mirroring one view alone reverses the sign of its "
                "disparity (left pixel x would match right pixel x + d)"
            )
        return
    left_only = [k for k in LEFT_ONLY_KEYS if k in ex]
    if left_only:
        raise ValueError(
            f"flip_lr of a stereo pair makes the mirrored right view the new left view, but {left_only} "
            "annotate only the left view"
        )
    for left, right in RIGHT_VIEW.items():
        if left in ex and right not in ex:
            raise ValueError(
                f"flip_lr of a stereo pair needs {right!r} along with {left!r}: the new left view is the mirrored "
                f"right view, and its {left} is the mirrored {right}, which {left!r} does not give"
            )


def check_not_stereo(ex: Example, op: str) -> None:
    """Raises ValueError if ``ex`` has stereo keys, which ``op`` (a rotation) cannot keep consistent."""
    stereo = [k for k in STEREO_KEYS if k in ex]
    if stereo:
        raise ValueError(
            f"{op} would break the epipolar geometry of a stereo pair (matching pixels must stay on the same row); "
            f"the example has {stereo}"
        )


def flip(ex: Example, axis: int) -> Example:
    """Mirrors every key along ``axis`` (0: upside-down, 1: left-right).

    A left-right flip of a stereo pair also swaps the views: new left = mirror(old right), new right =
    mirror(old left), and likewise ``disparity`` <-> ``disparity_right``, their masks and ``occlusion`` <->
    ``occlusion_right``, because the mirrored right view is the one that sees the scene from the left. Call
    ``check_flip_lr`` first. A frame pair (``image_next``) mirrors both frames in place; its ``flow`` negates dx
    (``axis=1``) or dy (``axis=0``).
    """
    height, width = size(ex)

    def fn(a: np.ndarray, spec: DenseKey, fill: float) -> np.ndarray:
        # Slicing rather than np.flip, which costs 4 us more a call on small images.
        out = np.ascontiguousarray(a[::-1] if axis == 0 else a[:, ::-1])
        if not spec.flow:
            return out
        return _scale_flow(out, -1.0, 1.0) if axis == 1 else _scale_flow(out, 1.0, -1.0)

    out = _per_key(ex, fn)
    if axis == 1 and "image_right" in ex:
        for left, right in RIGHT_VIEW.items():
            views = {left: out.pop(right, None), right: out.pop(left, None)}
            out.update({k: v for k, v in views.items() if v is not None})
    if "boxes" in ex:
        out = set_boxes(out, flip_boxes(ex["boxes"], height if axis == 0 else width, axis), height, width)
    if "proposals" in ex:
        out = set_proposals(out, flip_boxes(ex["proposals"], height if axis == 0 else width, axis), height, width)
    return out


def _scale_flow(flow: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """``flow`` ``[..., 2]`` with dx multiplied by ``sx`` and dy by ``sy``, in its own dtype."""
    return flow * np.asarray([sx, sy], flow.dtype)


def window(a: np.ndarray, y: int, x: int, h: int, w: int, fill: float) -> np.ndarray:
    """Rows ``y .. y+h-1`` and columns ``x .. x+w-1`` of ``a``; parts outside ``a`` take ``fill``."""
    height, width = a.shape[:2]
    if y >= 0 and x >= 0 and y + h <= height and x + w <= width:
        return a[y : y + h, x : x + w]
    # Slice assignment into a filled array: np.pad costs ~60 us a record on digits, a fifth of the pipeline, and
    # np.full ~2 us more than np.zeros.
    shape = (h, w, *a.shape[2:])
    out = np.zeros(shape, a.dtype) if fill == 0 else np.full(shape, fill, a.dtype)
    y0, y1, x0, x1 = max(y, 0), min(y + h, height), max(x, 0), min(x + w, width)
    if y1 > y0 and x1 > x0:
        out[y0 - y : y1 - y, x0 - x : x1 - x] = a[y0:y1, x0:x1]
    return out


def crop(ex: Example, y: int, x: int, h: int, w: int, seg_fill: float = SEG_FILL) -> Example:
    """The ``h x w`` window at ``(y, x)`` of every key (may reach outside: padded); both stereo views alike."""
    out = _per_key(ex, lambda a, spec, fill: window(a, y, x, h, w, fill), seg_fill)
    if "boxes" in ex:
        out = set_boxes(out, shift_scale_boxes(ex["boxes"], y, x), h, w)
    if "proposals" in ex:
        out = set_proposals(out, shift_scale_boxes(ex["proposals"], y, x), h, w)
    return out


def nearest_indices(n_src: int, n_dst: int) -> np.ndarray:
    """Source index of each of ``n_dst`` output pixels: the pixel holding its centre, ``(i + 0.5) * n_src / n_dst``."""
    # Integer arithmetic, so a 2x upsampling maps exactly to i // 2 with no rounding at the .5 boundaries.
    return np.minimum((2 * np.arange(n_dst) + 1) * n_src // (2 * n_dst), n_src - 1)


def resize(ex: Example, h: int, w: int) -> Example:
    """Every key resized to ``h x w``: images bilinear, the rest nearest; disparities and ``focal_px`` scaled by
    ``w / width``, flow by ``w / width`` in x and ``h / height`` in y."""
    height, width = size(ex)
    rows, cols = nearest_indices(height, h), nearest_indices(width, w)
    sy, sx = h / height, w / width

    def fn(a: np.ndarray, spec: DenseKey, fill: float) -> np.ndarray:
        if spec.linear:
            return resize_image(a, (h, w))
        out = a[rows][:, cols]
        if spec.flow:
            return _scale_flow(out, sx, sy)
        return out * sx if spec.disparity else out

    out = _per_key(ex, fn)
    for key in CALIBRATION_KEYS:
        if key in ex:
            out[key] = np.asarray(ex[key]) * sx
    if "boxes" in ex:
        out = set_boxes(out, shift_scale_boxes(ex["boxes"], 0, 0, sy, sx), h, w, area_scale=sy * sx)
    if "proposals" in ex:
        out = set_proposals(out, shift_scale_boxes(ex["proposals"], 0, 0, sy, sx), h, w)
    return out


def rotate(ex: Example, degrees: float, seg_fill: float = SEG_FILL) -> Example:
    """Every key rotated counter-clockwise as displayed about the centre, as ``image_fns.rotate_image``.

    Images bilinear, the rest nearest (areas rotated in from outside take the fill); boxes become the enclosing
    box of their rotated corners (``boxes.rotate_boxes``). ``flow`` vectors rotate with the frames: a frame-1
    point ``p`` and its match ``p + f`` both move by the rotation, so the vector at the rotated point is the
    rotated ``f``. Refuses stereo keys (``check_not_stereo``).
    """
    check_not_stereo(ex, "rotate")
    height, width = size(ex)
    # Source position of each output pixel centre: the inverse rotation (skimage's rotate maps the same way).
    t = np.deg2rad(degrees)
    c, s = np.cos(t), np.sin(t)
    dy, dx = np.mgrid[:height, :width] + 0.5
    dy, dx = dy - height / 2, dx - width / 2
    sy = np.floor(height / 2 + s * dx + c * dy).astype(np.int64)
    sx = np.floor(width / 2 + c * dx - s * dy).astype(np.int64)
    outside = (sy < 0) | (sy >= height) | (sx < 0) | (sx >= width)
    sy, sx = np.clip(sy, 0, height - 1), np.clip(sx, 0, width - 1)

    def fn(a: np.ndarray, spec: DenseKey, fill: float) -> np.ndarray:
        if spec.linear:
            return rotate_image(a, degrees)
        out = a[sy, sx]
        out[outside] = fill
        if spec.flow:  # (dx, dy) -> (c dx + s dy, -s dx + c dy): the inverse of the source mapping above
            fx, fy = out[..., 0], out[..., 1]
            return np.stack([c * fx + s * fy, c * fy - s * fx], axis=-1).astype(out.dtype)
        return out

    out = _per_key(ex, fn, seg_fill)
    if "boxes" in ex:
        out = set_boxes(out, rotate_boxes(ex["boxes"], degrees, height, width), height, width)
    if "proposals" in ex:
        out = set_proposals(out, rotate_boxes(ex["proposals"], degrees, height, width), height, width)
    return out

"""Geometric ops: each moves every key of the data contract together (see :mod:`mlcv.data.ops.spatial`).

Images (every view: ``image``, ``image_right``, ``image_next``) are resampled
bilinearly; masks, segmentation, depth, disparity, occlusion and flow by
nearest neighbour, disparity and flow values rescaled with the pixels (and
``focal_px`` with the width); boxes geometrically, clipped to the image, with boxes left
empty dropped together with their labels and mask rows. ``seg_fill`` is the
``segmentation`` value of areas an op pads in (255, "ignore", by default);
other keys pad with 0. On an image-only example each op draws the same random
numbers and gives the same image as it did when it moved the image alone.
"""

from __future__ import annotations

import numpy as np

from mlcv.data.ops import spatial
from mlcv.data.ops.image_fns import resized_crop_box
from mlcv.data.ops.registry import Example, Op, register
from mlcv.data.ops.spatial import SEG_FILL

MOVES = spatial.MOVED_KEYS
# rotate refuses stereo pairs, so it never moves their keys.
ROTATE_MOVES = tuple(k for k in MOVES if k not in spatial.STEREO_KEYS)


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _shape(ex: Example) -> tuple[int, ...]:
    # For error messages: the image's full shape, as the image-only ops reported it.
    return tuple(np.shape(ex["image"])) if "image" in ex else spatial.size(ex)


@register("flip_lr", moves=MOVES)
def flip_lr(p: float = 0.5) -> Op:
    """Mirrors left-right with probability ``p``.

    A stereo pair (``image_right``) swaps its views as it mirrors them: new left = mirror(old right), new right =
    mirror(old left). Its ``disparity`` must then be the mirrored right-view disparity, so a pair with
    ``disparity`` needs ``disparity_right`` (likewise ``disparity_mask`` needs ``disparity_right_mask`` and
    ``occlusion`` needs ``occlusion_right``), and
    left-view-only annotations (boxes, masks, segmentation, depth) cannot come along: such examples raise
    ValueError whatever the draw, so a bad pipeline fails on its first record rather than on half of them.
    A frame pair (``image_next``) mirrors both frames and negates the x component of ``flow``.
    """

    def op(ex: Example, rng: np.random.Generator) -> Example:
        spatial.check_flip_lr(ex)
        if rng.random() < p:
            return spatial.flip(ex, axis=1)
        return ex

    return op


@register("flip_ud", moves=MOVES)
def flip_ud(p: float = 0.5) -> Op:
    """Mirrors upside-down with probability ``p``; both views alike, disparity values kept, flow dy negated."""

    def op(ex: Example, rng: np.random.Generator) -> Example:
        if rng.random() < p:
            return spatial.flip(ex, axis=0)
        return ex

    return op


@register("random_crop", moves=MOVES)
def random_crop(size: int | tuple[int, int], pad: int = 0, seg_fill: float = SEG_FILL) -> Op:
    """Pads by ``pad`` on each side (0; ``seg_fill`` for segmentation), then crops ``size`` at a random place.

    Both views of a pair (stereo or frames) are cropped at the same place, so disparities and flow are unchanged.
    """
    h, w = _hw(size)

    def op(ex: Example, rng: np.random.Generator) -> Example:
        height, width = spatial.size(ex)
        if height + 2 * pad < h or width + 2 * pad < w:
            shape = (height + 2 * pad, width + 2 * pad, *_shape(ex)[2:])
            raise ValueError(f"random_crop({size}): image {shape} is smaller than the crop")
        y = int(rng.integers(0, height + 2 * pad - h + 1))
        x = int(rng.integers(0, width + 2 * pad - w + 1))
        return spatial.crop(ex, y - pad, x - pad, h, w, seg_fill)

    return op


@register("center_crop", moves=MOVES)
def center_crop(size: int | tuple[int, int]) -> Op:
    """Crops the central ``size`` window (int: square); an odd margin leaves the extra pixel below / right."""
    h, w = _hw(size)

    def op(ex: Example, rng: np.random.Generator) -> Example:
        height, width = spatial.size(ex)
        if height < h or width < w:
            raise ValueError(f"center_crop({size}): image {_shape(ex)} is smaller than the crop")
        return spatial.crop(ex, (height - h) // 2, (width - w) // 2, h, w)

    return op


@register("resize", moves=MOVES)
def resize(size: int | tuple[int, int]) -> Op:
    """Resizes to ``size`` (int: square): images bilinear (``image_fns.resize_image``), other keys nearest.

    Disparities and ``focal_px`` are scaled by new width / old width; flow by new / old width in x and new / old
    height in y.
    """
    h, w = _hw(size)
    return lambda ex, rng: spatial.resize(ex, h, w)


def short_side_size(height: int, width: int, size: int, max_size: int | None = None) -> tuple[int, int]:
    """The ``(height, width)`` with the shorter side ``size`` and the aspect ratio kept, as ``resize_short_image``;
    with ``max_size``, smaller if needed so that the longer side is at most ``max_size`` (Detectron's 800 / 1333).
    """
    scale = size / min(height, width)
    if max_size is not None:
        scale = min(scale, max_size / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


@register("resize_short", moves=MOVES)
def resize_short(size: int, max_size: int | None = None) -> Op:
    """Resizes the shorter side to ``size`` (the longer one to at most ``max_size``), keeping the aspect ratio;
    keys move as in ``resize``.
    """

    def op(ex: Example, rng: np.random.Generator) -> Example:
        return spatial.resize(ex, *short_side_size(*spatial.size(ex), size, max_size))

    return op


@register("pad_to", moves=MOVES)
def pad_to(size: int | tuple[int, int], seg_fill: float = SEG_FILL) -> Op:
    """Pads below and to the right to exactly ``size`` (int: square), so that images of different aspect ratios
    batch together; boxes keep their pixel coordinates. A larger image is an error (resize it first).
    """
    h, w = _hw(size)

    def op(ex: Example, rng: np.random.Generator) -> Example:
        height, width = spatial.size(ex)
        if height > h or width > w:
            raise ValueError(f"pad_to({size}): image {_shape(ex)} is larger; resize it first (resize_short max_size)")
        return spatial.crop(ex, 0, 0, h, w, seg_fill)

    return op


@register("random_resized_crop", moves=MOVES)
def random_resized_crop(
    size: int | tuple[int, int], scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3)
) -> Op:
    """Crops a random area fraction and aspect ratio (``resized_crop_box``), resizes to ``size``.

    Keys move as in a crop then ``resize``: a stereo pair is cropped at the same place in both views and its
    disparities scaled by the resize's width factor.
    """
    h, w = _hw(size)

    def op(ex: Example, rng: np.random.Generator) -> Example:
        height, width = spatial.size(ex)
        y, x, ch, cw = resized_crop_box(height, width, rng, scale, ratio)
        return spatial.resize(spatial.crop(ex, y, x, ch, cw), h, w)

    return op


@register("random_scale", moves=MOVES)
def random_scale(min_scale: float, max_scale: float, seg_fill: float = SEG_FILL) -> Op:
    """Zooms by a factor uniform in [min_scale, max_scale] about the centre, keeping the size (``zoom_image``).

    A resize by the factor, then a central crop or padding (0; ``seg_fill`` for segmentation) back to the size.
    """

    def op(ex: Example, rng: np.random.Generator) -> Example:
        height, width = spatial.size(ex)
        factor = float(rng.uniform(min_scale, max_scale))
        zh, zw = max(1, round(height * factor)), max(1, round(width * factor))
        # The window of the zoomed image that centres the shorter length in the longer: a negative offset pads.
        y = (zh - height) // 2 if zh >= height else -((height - zh) // 2)
        x = (zw - width) // 2 if zw >= width else -((width - zw) // 2)
        return spatial.crop(spatial.resize(ex, zh, zw), y, x, height, width, seg_fill)

    return op


@register("rotate", moves=ROTATE_MOVES)
def rotate(max_degrees: float, p: float = 1.0, seg_fill: float = SEG_FILL) -> Op:
    """With probability ``p``, rotates by an angle uniform in [-max_degrees, max_degrees] (``rotate_image``).

    Images bilinear, other keys nearest, areas rotated in from outside 0 (``seg_fill`` for segmentation). A box
    becomes the axis-aligned box enclosing its rotated corners, clipped: exact for rectangular objects, looser
    than the rotated mask's tight box for others. A stereo pair raises ValueError whatever the draw: rotation
    breaks its epipolar geometry. A frame pair rotates both frames alike and its ``flow`` vectors with them.
    """

    def op(ex: Example, rng: np.random.Generator) -> Example:
        spatial.check_not_stereo(ex, "rotate")
        if rng.random() >= p:
            return ex
        return spatial.rotate(ex, float(rng.uniform(-max_degrees, max_degrees)), seg_fill)

    return op

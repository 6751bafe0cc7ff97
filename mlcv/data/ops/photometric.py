"""Photometric ops: they change pixel values of the views and never move masks, boxes or any other key.

The other view of a pair, a stereo pair's right view (``image_right``) or a
flow pair's second frame (``image_next``), gets the same ``normalize`` and
``scale`` as ``image``. ``color_jitter`` draws its factors and order for each
view on its own, by default (``same_for_views=True``: one draw for all): two
cameras, or two exposures, rarely record a scene alike, and a matcher should
not rely on exact brightness constancy. ``image`` draws first, so an image-only
example draws and gives what it did before pairs came. ``cutout`` occludes
``image`` only, since the same pixel square in the other view shows a
different part of the scene.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mlcv.data.ops.image_fns import (
    adjust_brightness,
    adjust_contrast,
    adjust_saturation,
    as_float,
    cutout_image,
    restore_dtype,
)
from mlcv.data.ops.registry import Example, Op, register

VIEWS = ("image", "image_right", "image_next")


def _map_views(ex: Example, fn: Callable[[np.ndarray], np.ndarray]) -> Example:
    """``ex`` with ``fn`` applied to ``image`` and to each other view present (``image_right``, ``image_next``)."""
    out = {**ex, "image": fn(ex["image"])}
    for key in VIEWS[1:]:
        if key in ex:
            out[key] = fn(ex[key])
    return out


@register("normalize", moves=VIEWS)
def normalize(mean: float | tuple[float, ...] = 0.0, std: float | tuple[float, ...] = 1.0) -> Op:
    """``(image - mean) / std`` in float32; mean and std are in raw pixel units."""
    mean_a = np.asarray(mean, np.float32)
    inv_std = 1.0 / np.asarray(std, np.float32)

    def op(ex: Example, rng: np.random.Generator) -> Example:
        return _map_views(ex, lambda img: (np.asarray(img, np.float32) - mean_a) * inv_std)

    return op


@register("scale", moves=VIEWS)
def scale(factor: float) -> Op:
    """Multiplies the image by ``factor`` (``scale(1/255)``), as float32."""

    def op(ex: Example, rng: np.random.Generator) -> Example:
        return _map_views(ex, lambda img: np.asarray(img, np.float32) * np.float32(factor))

    return op


@register("cutout", moves=("image",))
def cutout(size: int, p: float = 0.5, fill: float = 0.0) -> Op:
    """With probability ``p``, fills a ``size`` square centred on a uniform pixel (DeVries & Taylor 2017).

    Squares near the border are clipped, so smaller. Keeps the dtype; see ``cutout_image``. Only ``image``:
    masks and boxes keep describing the object behind the square, and a right view is left whole.
    """

    def op(ex: Example, rng: np.random.Generator) -> Example:
        if rng.random() >= p:
            return ex
        img = ex["image"]
        cy, cx = int(rng.integers(0, img.shape[0])), int(rng.integers(0, img.shape[1]))
        return {**ex, "image": cutout_image(img, cy, cx, size, fill)}

    return op


@register("color_jitter", moves=VIEWS)
def color_jitter(
    brightness: float = 0.0,
    contrast: float = 0.0,
    saturation: float = 0.0,
    clip: tuple[float, float] | None = None,
    same_for_views: bool = False,
) -> Op:
    """Adjusts brightness, contrast and saturation in random order, as torchvision's ``ColorJitter``.

    Each factor is uniform in [max(0, 1 - x), 1 + x]; an x of 0 leaves that adjustment out. Works in float on any
    value range; ``clip=(lo, hi)`` clips after each adjustment (``(0, 1)`` is torchvision's float behaviour).
    Keeps the dtype: integer images are rounded and clipped to the dtype's range once, at the end. Each view of a
    pair (``image_right``, ``image_next``) draws its own order and factors after ``image``'s; with
    ``same_for_views=True`` it gets ``image``'s (its contrast still pivots on its own mean grey).
    """
    adjust = [adjust_brightness, adjust_contrast, adjust_saturation]
    strengths = [brightness, contrast, saturation]
    if any(x < 0 for x in strengths):
        raise ValueError(f"color_jitter strengths must be >= 0, got {strengths}")

    def draw(rng: np.random.Generator) -> tuple[np.ndarray, list[float | None]]:
        order = rng.permutation(3)
        # Python floats, so float32 images stay float32 (NumPy 2 promotes float32 * np.float64 to float64).
        return order, [float(rng.uniform(max(0.0, 1 - x), 1 + x)) if x > 0 else None for x in strengths]

    def jitter(img: np.ndarray, order: np.ndarray, factors: list[float | None]) -> np.ndarray:
        x = as_float(img)
        for i in order:
            if factors[i] is not None:
                x = adjust[i](x, factors[i])
                if clip is not None:
                    x = np.clip(x, clip[0], clip[1])
        return restore_dtype(x, img.dtype)

    def op(ex: Example, rng: np.random.Generator) -> Example:
        first = draw(rng)
        out = {**ex, "image": jitter(ex["image"], *first)}
        for key in VIEWS[1:]:
            if key in ex:
                out[key] = jitter(ex[key], *(first if same_for_views else draw(rng)))
        return out

    return op

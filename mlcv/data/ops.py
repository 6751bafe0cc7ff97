"""Preprocessing ops composed from strings: ``"flip_lr|random_crop(8, pad=1)|normalize"``.

Each op is a factory registered by name; called with the arguments written
in the string it returns a function ``(example, rng) -> example`` over a dict
of NumPy arrays. Ops that draw random numbers use only ``rng``, which grain
derives from the loader seed and the record index, so a pipeline is
reproducible and resumable.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from mlcv.data.image import (
    adjust_brightness,
    adjust_contrast,
    adjust_saturation,
    as_float,
    center_crop_image,
    cutout_image,
    resize_image,
    resize_short_image,
    resized_crop_box,
    restore_dtype,
    rotate_image,
    zoom_image,
)

Example = dict[str, Any]
Op = Callable[[Example, np.random.Generator], Example]

_OPS: dict[str, Callable[..., Op]] = {}


def register(name: str) -> Callable[[Callable[..., Op]], Callable[..., Op]]:
    """Registers an op factory under ``name``."""

    def wrap(factory: Callable[..., Op]) -> Callable[..., Op]:
        if name in _OPS:
            raise ValueError(f"preprocessing op {name!r} registered twice")
        _OPS[name] = factory
        return factory

    return wrap


def names() -> list[str]:
    """The registered op names."""
    return sorted(_OPS)


def parse(spec: str, defaults: dict[str, dict[str, Any]] | None = None) -> Op:
    """Builds one op from a ``|``-separated spec string.

    ``defaults`` maps an op name to keyword arguments used where the string
    gives none (the dataset's mean and std for ``normalize``, say).
    """
    defaults = defaults or {}
    ops = [_parse_one(piece.strip(), defaults) for piece in spec.split("|") if piece.strip()]

    def composed(example: Example, rng: np.random.Generator) -> Example:
        for op in ops:
            example = op(example, rng)
        return example

    return composed


def _parse_one(piece: str, defaults: dict[str, dict[str, Any]]) -> Op:
    try:
        node = ast.parse(piece, mode="eval").body
    except SyntaxError as e:
        raise ValueError(f"cannot parse preprocessing op {piece!r}: {e.msg}") from None
    if isinstance(node, ast.Name):
        name, args, kwargs = node.id, [], {}
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name = node.func.id
        try:
            args = [_literal(a) for a in node.args]
            kwargs = {k.arg: _literal(k.value) for k in node.keywords}
        except ValueError:
            raise ValueError(
                f"arguments of preprocessing op {piece!r} must be literals or arithmetic on them"
            ) from None
    else:
        raise ValueError(f"cannot parse preprocessing op {piece!r}")
    if name not in _OPS:
        raise ValueError(f"unknown preprocessing op {name!r}; valid ops: {', '.join(names())}")
    factory = _OPS[name]
    try:
        given = inspect.signature(factory).bind_partial(*args, **kwargs).arguments
        # Defaults fill only the parameters the string leaves out, whether it
        # gives the others by position or by name.
        kwargs = {**{k: v for k, v in defaults.get(name, {}).items() if k not in given}, **kwargs}
        return factory(*args, **kwargs)
    except TypeError as e:
        raise ValueError(f"bad arguments for preprocessing op {piece!r}: {e}") from None


_ARITHMETIC = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}


def _literal(node: ast.AST) -> Any:
    """A Python literal, allowing arithmetic such as ``1/255`` or ``-0.5``."""
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        return _ARITHMETIC[type(node.op)](_literal(node.left), _literal(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_literal(e) for e in node.elts)
    return ast.literal_eval(node)


@register("normalize")
def normalize(mean: float | tuple[float, ...] = 0.0, std: float | tuple[float, ...] = 1.0) -> Op:
    """``(image - mean) / std`` in float32; mean and std are in raw pixel units."""
    mean_a = np.asarray(mean, np.float32)
    inv_std = 1.0 / np.asarray(std, np.float32)

    def op(ex: Example, rng: np.random.Generator) -> Example:
        return {**ex, "image": (np.asarray(ex["image"], np.float32) - mean_a) * inv_std}

    return op


@register("scale")
def scale(factor: float) -> Op:
    """Multiplies the image by ``factor`` (``scale(1/255)``), as float32."""

    def op(ex: Example, rng: np.random.Generator) -> Example:
        return {**ex, "image": np.asarray(ex["image"], np.float32) * np.float32(factor)}

    return op


@register("flip_lr")
def flip_lr(p: float = 0.5) -> Op:
    """Mirrors the image left-right with probability ``p``."""

    def op(ex: Example, rng: np.random.Generator) -> Example:
        if rng.random() < p:
            return {**ex, "image": np.ascontiguousarray(ex["image"][:, ::-1])}
        return ex

    return op


@register("flip_ud")
def flip_ud(p: float = 0.5) -> Op:
    """Mirrors the image upside-down with probability ``p``."""

    def op(ex: Example, rng: np.random.Generator) -> Example:
        if rng.random() < p:
            return {**ex, "image": np.ascontiguousarray(ex["image"][::-1])}
        return ex

    return op


@register("random_crop")
def random_crop(size: int | tuple[int, int], pad: int = 0) -> Op:
    """Zero-pads by ``pad`` on each side, then crops ``size`` at a random place."""
    h, w = (size, size) if isinstance(size, int) else size

    def op(ex: Example, rng: np.random.Generator) -> Example:
        img = ex["image"]
        if pad:
            # Slice assignment into zeros: np.pad costs ~60 us a record here,
            # a fifth of the whole digits pipeline.
            padded = np.zeros((img.shape[0] + 2 * pad, img.shape[1] + 2 * pad, *img.shape[2:]), img.dtype)
            padded[pad:-pad, pad:-pad] = img
            img = padded
        if img.shape[0] < h or img.shape[1] < w:
            raise ValueError(f"random_crop({size}): image {img.shape} is smaller than the crop")
        y = int(rng.integers(0, img.shape[0] - h + 1))
        x = int(rng.integers(0, img.shape[1] - w + 1))
        return {**ex, "image": img[y : y + h, x : x + w]}

    return op


@register("keep")
def keep(*keys: str) -> Op:
    """Drops every key but ``keys`` (TFDS records may carry ids and file names)."""

    def op(ex: Example, rng: np.random.Generator) -> Example:
        return {k: ex[k] for k in keys}

    return op


# Each random op below draws its parameters from ``rng`` and calls a pure
# helper of mlcv.data.image that tests can call with a fixed parameter.


def _map_image(fn: Callable[..., np.ndarray], *args: Any) -> Op:
    return lambda ex, rng: {**ex, "image": fn(ex["image"], *args)}


@register("cutout")
def cutout(size: int, p: float = 0.5, fill: float = 0.0) -> Op:
    """With probability ``p``, fills a ``size`` square centred on a uniform pixel (DeVries & Taylor 2017).

    Squares near the border are clipped, so smaller. Keeps the dtype; see ``cutout_image``.
    """

    def op(ex: Example, rng: np.random.Generator) -> Example:
        if rng.random() >= p:
            return ex
        img = ex["image"]
        cy, cx = int(rng.integers(0, img.shape[0])), int(rng.integers(0, img.shape[1]))
        return {**ex, "image": cutout_image(img, cy, cx, size, fill)}

    return op


@register("rotate")
def rotate(max_degrees: float, p: float = 1.0) -> Op:
    """With probability ``p``, rotates by an angle uniform in [-max_degrees, max_degrees]; see ``rotate_image``."""

    def op(ex: Example, rng: np.random.Generator) -> Example:
        if rng.random() >= p:
            return ex
        return {**ex, "image": rotate_image(ex["image"], float(rng.uniform(-max_degrees, max_degrees)))}

    return op


@register("resize")
def resize(size: int | tuple[int, int]) -> Op:
    """Resizes to ``size`` (int: square) bilinearly, keeping the dtype; see ``resize_image``."""
    return _map_image(resize_image, size)


@register("resize_short")
def resize_short(size: int) -> Op:
    """Resizes the shorter side to ``size``, keeping the aspect ratio; see ``resize_short_image``."""
    return _map_image(resize_short_image, size)


@register("center_crop")
def center_crop(size: int | tuple[int, int]) -> Op:
    """Crops the central ``size`` window (int: square); keeps the dtype."""
    return _map_image(center_crop_image, size)


@register("random_resized_crop")
def random_resized_crop(
    size: int | tuple[int, int], scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3)
) -> Op:
    """Crops a random area fraction and aspect ratio (``resized_crop_box``), resizes to ``size``; keeps the dtype."""

    def op(ex: Example, rng: np.random.Generator) -> Example:
        img = ex["image"]
        y, x, h, w = resized_crop_box(img.shape[0], img.shape[1], rng, scale, ratio)
        return {**ex, "image": resize_image(img[y : y + h, x : x + w], size)}

    return op


@register("random_scale")
def random_scale(min_scale: float, max_scale: float) -> Op:
    """Zooms by a factor uniform in [min_scale, max_scale] about the centre, keeping the size; see ``zoom_image``."""

    def op(ex: Example, rng: np.random.Generator) -> Example:
        return {**ex, "image": zoom_image(ex["image"], float(rng.uniform(min_scale, max_scale)))}

    return op


@register("color_jitter")
def color_jitter(
    brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0, clip: tuple[float, float] | None = None
) -> Op:
    """Adjusts brightness, contrast and saturation in random order, as torchvision's ``ColorJitter``.

    Each factor is uniform in [max(0, 1 - x), 1 + x]; an x of 0 leaves that adjustment out. Works in float on any
    value range; ``clip=(lo, hi)`` clips after each adjustment (``(0, 1)`` is torchvision's float behaviour).
    Keeps the dtype: integer images are rounded and clipped to the dtype's range once, at the end.
    """
    adjust = [adjust_brightness, adjust_contrast, adjust_saturation]
    strengths = [brightness, contrast, saturation]
    if any(x < 0 for x in strengths):
        raise ValueError(f"color_jitter strengths must be >= 0, got {strengths}")

    def op(ex: Example, rng: np.random.Generator) -> Example:
        order = rng.permutation(3)
        # Python floats, so float32 images stay float32 (NumPy 2 promotes float32 * np.float64 to float64).
        factors = [float(rng.uniform(max(0.0, 1 - x), 1 + x)) if x > 0 else None for x in strengths]
        img = ex["image"]
        x = as_float(img)
        for i in order:
            if factors[i] is not None:
                x = adjust[i](x, factors[i])
                if clip is not None:
                    x = np.clip(x, clip[0], clip[1])
        return {**ex, "image": restore_dtype(x, img.dtype)}

    return op

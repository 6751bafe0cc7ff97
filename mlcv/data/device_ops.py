"""Random training augmentations of a whole batch on the accelerator, inside a jitted step.

``parse("flip_lr|random_crop(32, pad=4)|cutout(8)|normalize", defaults)`` returns a pure, jittable function
``(batch, key) -> batch`` over a dict of stacked arrays (``image`` ``[B, H, W, C]`` of any dtype, ``label`` ``[B]``,
...) and one JAX PRNG key. The batch can then cross to the device as the loader stored it (uint8: a quarter of the
bytes of float32) and be augmented there, as the fastest CIFAR-10 codebases do, leaving
the host only decoding and batching. It is the device twin of :mod:`mlcv.data.batch_ops`: the same ops, read through
the per-record parser (``registry.parse_call``), so a string means the same on every path, arguments and dataset
defaults included.

Random draws. The host paths draw from each record's own NumPy generator (grain's ``Philox(seed + index)``), in the
per-record op's order, so they agree bit for bit. This path draws from one key per batch instead: op number ``i``
of the string uses ``jax.random.fold_in(key, i)`` and draws for all records at once (``uniform`` or ``randint`` of
shape ``[B]``). Each op's distribution is its per-record op's, but the numbers are not: a run is reproducible from
its keys (``fold_in(seed_key, step)``, say), not against the host paths. In detail: flip and cutout uniforms are
float32 (a 2**-24 grid, not float64's 2**-53), compared with ``p`` exactly (``_threshold``); cutout draws a centre
for every record and uses it only where it cuts, where the per-record op draws one only when it cuts. The
deterministic ops (``center_crop``, ``normalize``, ``scale``) equal the NumPy ops bit for bit.

The ops: ``flip_lr``, ``flip_ud``, ``random_crop``, ``center_crop``, ``cutout``, ``normalize`` and ``scale``. They move
``image`` alone (``normalize`` and ``scale`` every view, as their per-record ops do) and pass other keys through; a
batch holding a key that the per-record op would also move (boxes, segmentation, a stereo view) is refused. Shapes
are static under jit, so such refusals and shape errors (a crop larger than the padded image) raise ValueError when
the function is traced. Each random op is a ``_draw_*`` of its parameters and an ``_apply_*`` of them, so that the
application can be checked against the per-record op given the same parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mlcv.data.ops import photometric, registry

Batch = dict[str, jax.Array]
DeviceOp = Callable[[Batch, jax.Array], Batch]

# The device versions, each under its per-record op's name with the keys it moves.
_VERSIONS = registry.BatchVersions("device", "on the host")
_device = _VERSIONS.register


def names() -> list[str]:
    """The ops that have a device version."""
    return _VERSIONS.names()


def parse(spec: str, defaults: dict[str, dict[str, Any]] | None = None) -> DeviceOp:
    """Builds the device version of a ``|``-separated op string, with the dataset's ``defaults`` as ``ops.parse``.

    The result ``(batch, key) -> batch`` is jittable; op number ``i`` draws from ``jax.random.fold_in(key, i)``.

    Raises:
      ValueError: an op unknown to :mod:`mlcv.data.ops`, bad arguments (the per-record parser's messages), or a
        registered op without a device version, named. Errors that depend on the batch (no ``image``, a crop
        larger than the image, keys the op cannot move) are raised when the result is called or traced.
    """
    defaults = defaults or {}
    device_ops = [_VERSIONS.bind(piece.strip(), defaults) for piece in spec.split("|") if piece.strip()]

    def composed(batch: Batch, key: jax.Array) -> Batch:
        _check_batch(batch)
        for i, op in enumerate(device_ops):
            batch = op(batch, jax.random.fold_in(key, i))
        return batch

    return composed


def _check_batch(batch: Batch) -> None:
    if "image" not in batch:
        raise ValueError(f"batch has no 'image'; it has {sorted(batch)}")
    shape = np.shape(batch["image"])
    if len(shape) < 3:
        raise ValueError(f"batch image must be [B, H, W, ...], got shape {shape}")


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _per_record(mask: jax.Array, img: jax.Array) -> jax.Array:
    """``mask`` ``[B, ...]`` with trailing unit axes to broadcast against ``img``."""
    return mask.reshape(mask.shape + (1,) * (img.ndim - mask.ndim))


def _threshold(p: float) -> np.float32:
    """The float32 ``t`` with ``u < t`` exactly when ``u < p`` (and ``u >= t`` exactly when ``u >= p``), for every
    float32 ``u``: the smallest float32 not below ``p`` (NaN for NaN).

    Comparing with ``float32(p)`` instead would be off by one grid step wherever the rounding goes down.
    """
    with np.errstate(over="ignore"):
        t = np.float32(p)
    # As Python floats: NumPy 2 would compare a float32 with a Python float in float32, where they are equal.
    if float(t) < float(p):
        t = np.nextafter(t, np.float32(np.inf))
    return t


def _draw_uniform(key: jax.Array, n: int) -> jax.Array:
    """``n`` float32 uniforms in [0, 1): the per-record ops' ``rng.random()``, one per record."""
    return jax.random.uniform(key, (n,), jnp.float32)


def _apply_flip(img: jax.Array, u: jax.Array, p: float, axis: int) -> jax.Array:
    """Mirrors record ``i`` of ``img`` along ``axis`` (1: rows, 2: columns) where ``u[i] < p``."""
    return jnp.where(_per_record(u < _threshold(p), img), jnp.flip(img, axis), img)


def _flip(axis: int, p: float) -> DeviceOp:
    def op(batch: Batch, key: jax.Array) -> Batch:
        img = jnp.asarray(batch["image"])
        return {**batch, "image": _apply_flip(img, _draw_uniform(key, img.shape[0]), p, axis)}

    return op


@_device("flip_lr")
def flip_lr(p: float) -> DeviceOp:
    """``flip_lr(p)`` on the device: each record mirrored left-right where its uniform is below ``p``."""
    return _flip(2, p)


@_device("flip_ud")
def flip_ud(p: float) -> DeviceOp:
    """``flip_ud(p)`` on the device: each record mirrored upside-down where its uniform is below ``p``."""
    return _flip(1, p)


def _draw_crop(key: jax.Array, n: int, span_y: int, span_x: int) -> tuple[jax.Array, jax.Array]:
    """Offsets into the padded image, uniform integers ``y`` in [0, span_y] and ``x`` in [0, span_x], ``[n]`` each."""
    ky, kx = jax.random.split(key)
    return jax.random.randint(ky, (n,), 0, span_y + 1), jax.random.randint(kx, (n,), 0, span_x + 1)


def _apply_crop(img: jax.Array, ys: jax.Array, xs: jax.Array, h: int, w: int, pad: int) -> jax.Array:
    """The ``h x w`` window at ``(ys[i], xs[i])`` of record ``i`` padded by ``pad`` zeros on each side, that is the
    window at ``(ys[i] - pad, xs[i] - pad)`` of the image, zero outside it (a negative ``pad`` trims)."""
    b, height, width = img.shape[:3]
    rows = ys[:, None] - pad + jnp.arange(h)
    cols = xs[:, None] - pad + jnp.arange(w)
    inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None, :]
    # One gather of clipped indices and a mask, not a padded copy: XLA fuses the mask with the ops around it. In
    # the whole CIFAR string (flip, crop, cutout, normalize; uint8 [128, 32, 32, 3], jitted on CPU) that is 15%
    # faster than padding then ``vmap(dynamic_slice)`` and 25% faster than a gather from the padded copy, though a
    # crop alone is a little slower.
    pixels = img[
        jnp.arange(b)[:, None, None],
        jnp.clip(rows, 0, height - 1)[:, :, None],
        jnp.clip(cols, 0, width - 1)[:, None, :],
    ]
    return jnp.where(_per_record(inside, img), pixels, jnp.zeros((), img.dtype))


@_device("random_crop")
def random_crop(size: int | tuple[int, int], pad: int, seg_fill: float) -> DeviceOp:
    """``random_crop(size, pad)`` on the device: each record's crop at offsets uniform over the padded image.

    ``seg_fill`` comes with the per-record signature; it has nothing to fill, as a batch with ``segmentation`` is
    refused.
    """
    h, w = _hw(size)

    def op(batch: Batch, key: jax.Array) -> Batch:
        img = jnp.asarray(batch["image"])
        height, width = img.shape[1:3]
        if height + 2 * pad < h or width + 2 * pad < w:
            shape = (height + 2 * pad, width + 2 * pad, *img.shape[3:])
            raise ValueError(f"random_crop({size}): image {shape} is smaller than the crop")
        ys, xs = _draw_crop(key, img.shape[0], height + 2 * pad - h, width + 2 * pad - w)
        return {**batch, "image": _apply_crop(img, ys, xs, h, w, pad)}

    return op


@_device("center_crop")
def center_crop(size: int | tuple[int, int]) -> DeviceOp:
    """``center_crop(size)`` on the device: one static slice; draws nothing."""
    h, w = _hw(size)

    def op(batch: Batch, key: jax.Array) -> Batch:
        img = jnp.asarray(batch["image"])
        height, width = img.shape[1:3]
        if height < h or width < w:
            raise ValueError(f"center_crop({size}): image {img.shape[1:]} is smaller than the crop")
        y, x = (height - h) // 2, (width - w) // 2
        return {**batch, "image": img[:, y : y + h, x : x + w]}

    return op


def _draw_cutout(key: jax.Array, n: int, height: int, width: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Each record's uniform (cut where below ``p``) and square centre: row uniform in [0, height), column in
    [0, width), ``[n]`` each."""
    ku, ky, kx = jax.random.split(key, 3)
    return _draw_uniform(ku, n), jax.random.randint(ky, (n,), 0, height), jax.random.randint(kx, (n,), 0, width)


def _fill_value(fill: float, dtype: Any) -> np.ndarray:
    # NumPy's cast of an assignment, as the per-record op assigns ``fill``: 128.7 is 128 in uint8 on every path.
    value = np.empty((), dtype)
    value[...] = fill
    return value


def _apply_cutout(
    img: jax.Array, u: jax.Array, cy: jax.Array, cx: jax.Array, size: int, p: float, fill: float
) -> jax.Array:
    """Fills, in each record ``i`` with ``not u[i] >= p``, rows ``cy - size // 2`` .. ``+ size - 1`` of columns
    ``cx - size // 2`` .. ``+ size - 1``, clipped to the image, with ``fill`` cast to the image dtype."""
    if size <= 0:  # an empty square, as the per-record slice of a non-positive size
        return img
    # The per-record op's own test (``>= p`` skips), so that even a NaN ``p`` cuts the same records.
    cut = ~(u >= _threshold(p))
    y0, x0 = cy - size // 2, cx - size // 2
    rows, cols = jnp.arange(img.shape[1]), jnp.arange(img.shape[2])
    # One select over the batch against a mask, not a dynamic update per record, as the square may hang over any
    # border. One unsigned comparison tests both ends of a range (``0 <= r - y0 < size``): with ``cut`` folded into
    # the rows first, the op costs no more than a copy of a uint8 batch, 1.6x faster than four signed comparisons.
    in_rows = ((rows - y0[:, None]).astype(jnp.uint32) < size) & cut[:, None]
    in_cols = (cols - x0[:, None]).astype(jnp.uint32) < size
    mask = in_rows[:, :, None] & in_cols[:, None, :]
    return jnp.where(_per_record(mask, img), _fill_value(fill, img.dtype), img)


@_device("cutout")
def cutout(size: int, p: float, fill: float) -> DeviceOp:
    """``cutout(size, p, fill)`` on the device: a square at a uniform centre filled in each record whose uniform is
    below ``p``."""

    def op(batch: Batch, key: jax.Array) -> Batch:
        img = jnp.asarray(batch["image"])
        draws = _draw_cutout(key, *img.shape[:3])
        return {**batch, "image": _apply_cutout(img, *draws, size, p, fill)}

    return op


def _map_views(batch: Batch, fn: Callable[[jax.Array], jax.Array]) -> Batch:
    return {**batch, **{key: fn(jnp.asarray(batch[key])) for key in photometric.VIEWS if key in batch}}


@_device("normalize", handles=photometric.VIEWS)
def normalize(mean: float | tuple[float, ...], std: float | tuple[float, ...]) -> DeviceOp:
    """``normalize(mean, std)`` on the device, bit for bit the per-record op: ``image - mean`` in float32, times
    ``1 / std`` computed in float32 on the host, for every view."""
    mean_a = np.asarray(mean, np.float32)
    inv_std = 1.0 / np.asarray(std, np.float32)

    def fn(img: jax.Array) -> jax.Array:
        return (img.astype(jnp.float32) - mean_a) * inv_std

    return lambda batch, key: _map_views(batch, fn)


@_device("scale", handles=photometric.VIEWS)
def scale(factor: float) -> DeviceOp:
    """``scale(factor)`` on the device: the image as float32 times ``float32(factor)``, for every view."""
    return lambda batch, key: _map_views(batch, lambda img: img.astype(jnp.float32) * np.float32(factor))

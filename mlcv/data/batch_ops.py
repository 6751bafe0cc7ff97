"""Batch-level preprocessing: the ops of an op string applied to a whole batch of images at once.

``parse("flip_lr|random_crop(32, pad=4)|cutout(8)|normalize", defaults)`` returns a function
``(batch, rngs) -> batch`` over a dict of stacked arrays (``image`` ``[B, H, W, C]``, ``label`` ``[B]``, ...)
and one generator per record. Record ``i`` draws its random numbers from ``rngs[i]`` with the same calls, in
the same order, as the per-record op of :mod:`mlcv.data.ops` does, so the batch equals the per-record op string
applied record by record with the same generators, bit for bit, and leaves each generator in the same state;
grain's per-record generators therefore keep a run reproducible and resumable whichever path it takes.

Only the draws run per record (0.3 to 1 us each: NumPy's scalar calls); the pixel work is vectorised over the
batch: one padded copy and one gather through a sliding-window view per key for all crops, one boolean-indexed copy
per key for all flips, one boolean mask for all cutout squares, one pass for ``normalize``, and for ``color_jitter``
one record's passes once per group of records that share an order of adjustments. Flips, crops and cutout move
whole pixels (``batch_dense.pixels``; ``masks`` values), not values, which is most of their speed on RGB.
``RecordGenerators`` gives the generators grain's sampler would give each record at a fifth of the cost of building
them.

The batch versions: ``flip_lr``, ``flip_ud``, ``random_crop`` and ``center_crop`` (:mod:`mlcv.data.batch_dense`)
move every dense key of ``spatial.DENSE_KEYS`` (views, ``masks`` ``[B, N, H, W]``, ``segmentation``, depth,
disparities, occlusions, ``flow``, their masks) as their per-record ops do, a stereo ``flip_lr`` swapping the views;
``cutout`` moves ``image``; ``normalize``, ``scale`` and ``color_jitter`` every view. Other keys pass through; a
batch holding a key that the per-record op would also move and the batch op cannot (boxes and their rows,
proposals: their counts differ from record to record) is refused rather than left behind. Any other op raises
ValueError naming it: it stays on the per-record path.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mlcv.data import batch_dense
from mlcv.data.ops import image_fns, photometric, registry

Batch = batch_dense.Batch
BatchOp = batch_dense.BatchOp

# The batch versions, each under its per-record op's name with the keys it moves.
_VERSIONS = registry.BatchVersions(
    "batch", "per record", " (box rows and proposals differ in count from record to record)"
)
_batched = _VERSIONS.register


def names() -> list[str]:
    """The ops that have a batch version."""
    return _VERSIONS.names()


def parse(spec: str, defaults: dict[str, dict[str, Any]] | None = None) -> BatchOp:
    """Builds the batch version of a ``|``-separated op string, with the dataset's ``defaults`` as ``ops.parse``.

    Raises:
      ValueError: an op unknown to :mod:`mlcv.data.ops`, bad arguments (the per-record parser's messages), or a
        registered op without a batch version, named.
    """
    defaults = defaults or {}
    batch_ops = [_VERSIONS.bind(piece.strip(), defaults) for piece in spec.split("|") if piece.strip()]

    def composed(batch: Batch, rngs: Sequence[np.random.Generator]) -> Batch:
        _check_batch(batch, rngs)
        for op in batch_ops:
            batch = op(batch, rngs)
        return batch

    return composed


def apply_batch(
    spec: str,
    batch: Batch,
    rngs: Sequence[np.random.Generator],
    defaults: dict[str, dict[str, Any]] | None = None,
) -> Batch:
    """``parse(spec, defaults)(batch, rngs)``: one call for a one-off batch; a loader should parse once."""
    return parse(spec, defaults)(batch, rngs)


class RecordGenerators:
    """Each record's generator as grain's samplers make it, ``Generator(Philox(key=seed + index))``, without the
    cost of making it.

    Building a Philox generator costs about 9 us, as much as a record's whole share of the batch ops; this keeps
    one generator per batch row and resets its state to that of a fresh ``Philox(key=key)`` (2 us). The
    generators a call returns are reset by the next call.
    """

    def __init__(self) -> None:
        self._pool: list[np.random.Generator] = []

    def __call__(self, keys: Sequence[int]) -> list[np.random.Generator]:
        """Generators in the state of ``np.random.Generator(np.random.Philox(key=k))`` for each of ``keys``."""
        while len(self._pool) < len(keys):
            self._pool.append(np.random.Generator(np.random.Philox(key=0)))
        for rng, key in zip(self._pool, keys, strict=False):
            key = int(key)
            if not 0 <= key < 2**128:
                raise ValueError(f"Philox key {key} is outside 0 .. 2**128 - 1")
            rng.bit_generator.state = {
                "bit_generator": "Philox",
                "state": {
                    "counter": np.zeros(4, np.uint64),
                    # Philox(key=k) stores k as two 64-bit words, low word first.
                    "key": np.array([key & (2**64 - 1), key >> 64], np.uint64),
                },
                "buffer": np.zeros(4, np.uint64),
                "buffer_pos": 4,
                "has_uint32": 0,
                "uinteger": 0,
            }
        return self._pool[: len(keys)]


def _check_batch(batch: Batch, rngs: Sequence[np.random.Generator]) -> None:
    if "image" not in batch:
        raise ValueError(f"batch has no 'image'; it has {sorted(batch)}")
    shape = np.shape(batch["image"])
    if len(shape) < 3:
        raise ValueError(f"batch image must be [B, H, W, ...], got shape {shape}")
    if len(rngs) != shape[0]:
        raise ValueError(f"{len(rngs)} generators for a batch of {shape[0]} records; need one per record")


# The geometric batch ops live with the pixel work they share; registered here with the keys they move.
for _name, _factory in (
    ("flip_lr", batch_dense.flip_lr),
    ("flip_ud", batch_dense.flip_ud),
    ("random_crop", batch_dense.random_crop),
    ("center_crop", batch_dense.center_crop),
):
    _batched(_name, batch_dense.HANDLES)(_factory)


@_batched("cutout")
def cutout(size: int, p: float, fill: float) -> BatchOp:
    """``cutout(size, p, fill)`` over a batch: per record ``rng.random()``, then, if it cuts, the centre's row and
    column, each one ``rng.integers``."""

    def op(batch: Batch, rngs: Sequence[np.random.Generator]) -> Batch:
        img = np.asarray(batch["image"])
        height, width = img.shape[1:3]
        n = len(rngs)
        cut = np.zeros(n, bool)
        cy = np.zeros(n, np.intp)
        cx = np.zeros(n, np.intp)
        for i, rng in enumerate(rngs):
            # The per-record op's own test (``>= p`` skips), so that even a NaN ``p`` cuts the same records.
            if not rng.random() >= p:
                cut[i] = True
                cy[i] = rng.integers(0, height)
                cx[i] = rng.integers(0, width)
        if not cut.any():
            return batch
        # Rows y0 .. y0 + size - 1 clipped to the image are exactly the per-record slice
        # max(y0, 0) : max(y0 + size, 0), since row indices are >= 0 and slicing clips at the far end.
        y0, x0 = cy - size // 2, cx - size // 2
        rows, cols = np.arange(height), np.arange(width)
        in_rows = (rows >= y0[:, None]) & (rows < (y0 + size)[:, None])
        in_cols = (cols >= x0[:, None]) & (cols < (x0 + size)[:, None])
        mask = cut[:, None, None] & in_rows[:, :, None] & in_cols[:, None, :]
        out = np.array(img, order="C")
        # A pixel of ``fill`` made by slice assignment, as the per-record op assigns it: the same cast to the dtype.
        pixel = np.empty((1, 1, 1, *img.shape[3:]), img.dtype)
        pixel[...] = fill
        # Assigned as whole pixels: 7x faster than value by value on RGB.
        batch_dense.pixels(out)[mask] = batch_dense.pixels(pixel)[0, 0, 0]
        return {**batch, "image": out}

    return op


def _map_views(batch: Batch, fn: Callable[[np.ndarray], np.ndarray]) -> Batch:
    return {**batch, **{key: fn(np.asarray(batch[key])) for key in photometric.VIEWS if key in batch}}


@_batched("normalize", handles=photometric.VIEWS)
def normalize(mean: float | tuple[float, ...], std: float | tuple[float, ...]) -> BatchOp:
    """``normalize(mean, std)`` over a batch: ``(image - mean) / std`` in float32, as the per-record op computes it
    (the subtraction, then a multiplication by ``1 / std`` in float32), for every view."""
    mean_a = np.asarray(mean, np.float32)
    inv_std = 1.0 / np.asarray(std, np.float32)
    spread: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}  # by image shape

    def fn(img: np.ndarray) -> np.ndarray:
        tail = img.shape[1:]
        if np.broadcast_shapes(tail, mean_a.shape, inv_std.shape) != tail:
            # mean or std widen the image (3 channel means on a grey image): the per-record expression as it is.
            return (np.asarray(img, np.float32) - mean_a) * inv_std
        # The same two float32 roundings per element, against mean and 1 / std spread over a whole image: per
        # channel, NumPy's inner loop would run over 3 values at a time, 15x slower on RGB.
        if tail not in spread:
            spread[tail] = tuple(np.broadcast_to(a, tail).reshape(-1) for a in (mean_a, inv_std))
        spread_mean, spread_inv_std = spread[tail]
        out = np.subtract(img.reshape(len(img), -1), spread_mean, dtype=np.float32)
        np.multiply(out, spread_inv_std, out=out)
        return out.reshape(img.shape)

    return lambda batch, rngs: _map_views(batch, fn)


@_batched("scale", handles=photometric.VIEWS)
def scale(factor: float) -> BatchOp:
    """``scale(factor)`` over a batch: the image times ``factor`` in float32, for every view."""

    def fn(img: np.ndarray) -> np.ndarray:
        return np.multiply(img, np.float32(factor), dtype=np.float32)

    return lambda batch, rngs: _map_views(batch, fn)


# The adjustments of color_jitter by their index in its draws: brightness, contrast, saturation.
_PERMUTATIONS = [tuple(int(j) for j in order) for order in itertools.permutations(range(3))]


@_batched("color_jitter", handles=photometric.VIEWS)
def color_jitter(
    brightness: float,
    contrast: float,
    saturation: float,
    clip: tuple[float, float] | None,
    same_for_views: bool,
) -> BatchOp:
    """``color_jitter(brightness, contrast, saturation, clip, same_for_views)`` over a batch, every view.

    Per record the per-record op's draws in its order: ``rng.permutation(3)``, then one ``rng.uniform`` per
    adjustment switched on, for ``image`` and then, unless ``same_for_views``, again for each other view. The
    pixel work runs once per group of records that apply the adjustments in the same order (at most 6, and one
    when a single adjustment is on), with each record's factors broadcast over its pixels: the per-record op's
    float operations on each element, in its dtypes, so bit for bit its result.
    """
    strengths = (brightness, contrast, saturation)
    if any(x < 0 for x in strengths):
        raise ValueError(f"color_jitter strengths must be >= 0, got {list(strengths)}")
    on = [x > 0 for x in strengths]
    bounds = [(max(0.0, 1 - x), 1 + x) for x in strengths]
    # A permutation's code (3 * first + second, which fixes the third) -> the order of the adjustments switched on:
    # records whose permutations differ only in where the switched-off adjustments fall share a group.
    orders = {3 * p[0] + p[1]: tuple(j for j in p if on[j]) for p in _PERMUTATIONS}

    def op(batch: Batch, rngs: Sequence[np.random.Generator]) -> Batch:
        views = [key for key in photometric.VIEWS if key in batch]
        n_draws = 1 if same_for_views else len(views)
        codes = np.empty((n_draws, len(rngs)), np.intp)
        factors = np.ones((n_draws, len(rngs), 3))
        for i, rng in enumerate(rngs):
            for v in range(n_draws):
                perm = rng.permutation(3)
                codes[v, i] = 3 * perm[0] + perm[1]
                for j in range(3):
                    if on[j]:
                        factors[v, i, j] = rng.uniform(*bounds[j])
        out = dict(batch)
        for v, key in enumerate(views):
            d = 0 if same_for_views else v
            out[key] = _jitter_view(np.asarray(batch[key]), codes[d], factors[d])
        return out

    def _jitter_view(img: np.ndarray, codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, code in enumerate(codes.tolist()):
            groups.setdefault(orders[code], []).append(i)
        if len(groups) == 1:
            return _jitter(img, next(iter(groups)), factors, owned=False)
        out = np.empty(img.shape, img.dtype)
        for order, records in groups.items():
            # A gathered group is a copy: the adjustments may write into it.
            out[records] = _jitter(img[records], order, factors[records], owned=True)
        return out

    def _jitter(img: np.ndarray, order: tuple[int, ...], factors: np.ndarray, owned: bool) -> np.ndarray:
        """The per-record ``jitter`` of each record of ``img``; writes into ``img`` if ``owned`` (a copy)."""
        x = image_fns.as_float(img)
        owned = owned or x is not img
        for j in order:
            x = _ADJUST[j](x, factors[:, j], x if owned else None)
            owned = owned or x is not img
            if clip is not None:
                x = np.clip(x, clip[0], clip[1], out=x if owned else None)
                owned = True
        if owned and np.issubdtype(img.dtype, np.integer):
            # restore_dtype's rounding and clipping, in place.
            info = np.iinfo(img.dtype)
            return np.clip(np.rint(x, out=x), info.min, info.max, out=x).astype(img.dtype)
        return image_fns.restore_dtype(x, img.dtype)

    return op


def _record_factors(f: np.ndarray, dtype: np.dtype, ndim: int) -> np.ndarray:
    """Record factors ``f`` (float64) in ``dtype``, shaped to broadcast over ``[B, ...]`` of ``ndim`` axes.

    The per-record op multiplies by a Python float, which NumPy rounds to the array's dtype first: this rounding.
    """
    return np.asarray(f, dtype).reshape(-1, *(1,) * (ndim - 1))


# Each adjustment below gives, record by record, the adjustment of image_fns on a float image: the same float
# operations on each element in the same dtypes, then its cast back to the image's dtype. ``out`` is ``x`` or None;
# a sum written into a narrower ``out`` (float16 image, float32 grey) is computed wide and then cast, as the
# per-record sum is before restore_dtype casts it.


def _brightness(x: np.ndarray, f: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """``image_fns.adjust_brightness`` of each record ``i`` of float ``x`` by ``f[i]``."""
    return np.multiply(x, _record_factors(f, x.dtype, x.ndim), out=out)


def _contrast(x: np.ndarray, f: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """``image_fns.adjust_contrast`` of each record ``i`` of float ``x`` by ``f[i]``."""
    grey = image_fns.rgb_to_gray(x) if x.shape[-1] == 3 else x
    # Each record's mean as the per-record op takes it: a pairwise sum over its contiguous values, then a division.
    mean = np.ascontiguousarray(grey).reshape(len(x), -1).mean(axis=1)
    pivot = _record_factors(1 - f, mean.dtype, x.ndim) * mean.reshape(-1, *(1,) * (x.ndim - 1))
    y = np.multiply(_record_factors(f, x.dtype, x.ndim), x, out=out)
    return np.add(y, pivot, out=y)


def _saturation(x: np.ndarray, f: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """``image_fns.adjust_saturation`` of each record ``i`` of float ``x`` by ``f[i]``."""
    if x.shape[-1] == 1:
        return x
    if x.shape[-1] != 3:
        raise ValueError(f"saturation needs 1 or 3 channels; image is {x.shape[1:]}")
    grey = image_fns.rgb_to_gray(x)
    blend = np.multiply(_record_factors(1 - f, grey.dtype, x.ndim), grey)[..., 0]
    y = np.multiply(_record_factors(f, x.dtype, x.ndim), x, out=out)
    # A channel at a time: adding the grey broadcast over the channels would run NumPy's inner loop over 3 values
    # at a time, 5x slower.
    for c in range(3):
        np.add(y[..., c], blend, out=y[..., c])
    return y


_ADJUST = (_brightness, _contrast, _saturation)

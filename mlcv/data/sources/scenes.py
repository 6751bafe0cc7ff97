"""Digit scenes: real handwritten digits pasted on crops of real photos, with boxes and instance and semantic masks.

Every digit is one of scikit-learn's ``load_digits`` images (8x8, values 0..16), upscaled 2-5x with independent
row and column factors (aspect 0.7-1.4) by bilinear interpolation, and painted as ink with opacity
``value / 16`` over a random crop of one of the colour photos that ship with scikit-image and scikit-learn
(:data:`PHOTOS`). Each channel of the ink lies near the extreme away from the patch under the strokes (dark on
bright, bright on dark, blue on orange), so the strokes contrast with whatever lies below them.

A digit's *strokes* are the pixels of opacity above :data:`STROKE_ALPHA`. Later digits lie on top: an instance
mask holds the strokes of its digit that no later digit's strokes cover, and its box is the tight box of that
mask in the continuous pixel coordinates of :mod:`mlcv.data.ops.boxes` (rows ``ymin .. ymax - 1``). Placements
are rejected where they would leave a digit with less than ``1 - max_hidden`` of its strokes visible, counting
both what the image border cuts off (at most ``max_cut``) and what later digits cover, so every digit stays
readable and every mask is non-empty.

NumPy, scikit-image and scikit-learn only: no TFDS (see :mod:`.scenes_builder` for the stored datasets).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence

import numpy as np

# Opacity above which a pixel counts as stroke: the faint antialiased rim of a stroke is neither box nor mask.
STROKE_ALPHA = 0.25
# (module, name): scikit-image's colour photos stored inside its package (no download), and scikit-learn's
# two sample images. scikit-image's other colour images are fetched from the network on first use.
PHOTOS = (
    ("skimage", "astronaut"),
    ("skimage", "coffee"),
    ("skimage", "chelsea"),
    ("skimage", "rocket"),
    ("skimage", "immunohistochemistry"),
    ("skimage", "hubble_deep_field"),
    ("skimage", "retina"),
    ("sklearn", "china.jpg"),
    ("sklearn", "flower.jpg"),
)
# Photos are shrunk once to this short side: a 96 px background is a crop of 35-100 % of it, so it is never
# upscaled by more than 96 / 89 and resizing a crop stays cheap.
PHOTO_SIDE = 256


def _read_photo(module: str, name: str) -> np.ndarray:
    if module == "skimage":
        from skimage import data

        return getattr(data, name)()
    from sklearn.datasets import load_sample_image

    return load_sample_image(name)


def resample_matrix(n_out: int, n_in: int, *, zero_outside: bool = False) -> np.ndarray:
    """``[n_out, n_in]`` float32 weights that resample ``n_in`` pixels to ``n_out`` over the same extent.

    A linear (triangle) filter between pixel centres: upscaling is bilinear interpolation, as
    ``skimage.transform.resize(order=1)``; downscaling widens the triangle by the factor, so each output pixel
    averages its footprint (antialiased, as PIL's bilinear resize). Rows sum to 1, except that with
    ``zero_outside`` an upscaled edge pixel keeps only the weight of its neighbours inside: the image is taken as
    zero beyond its border (``resize(..., mode="constant", cval=0)``). Separable: ``A @ x @ B.T`` resizes 2-D.
    """
    scale = n_in / n_out
    centres = (np.arange(n_out) + 0.5) * scale  # continuous coordinates: pixel i spans [i, i + 1)
    distance = np.abs(np.arange(n_in) + 0.5 - centres[:, None]) / max(scale, 1.0)
    weights = np.maximum(0.0, 1.0 - distance)
    if scale > 1 or not zero_outside:
        weights /= weights.sum(axis=1, keepdims=True)
    return weights.astype(np.float32)


@functools.lru_cache(maxsize=64)
def _taps(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`resample_matrix` as ``[n_out, K]`` input indices and weights of its few non-zero taps per row.

    A dense product would spend its time on zeros: a 256 -> 96 px row has 6 taps, not 256.
    """
    weights = resample_matrix(n_out, n_in)
    nonzero = weights > 0
    first = nonzero.argmax(axis=1)
    index = first[:, None] + np.arange(nonzero.sum(axis=1).max())
    inside = index < n_in
    index = np.minimum(index, n_in - 1)
    taps = np.where(inside, np.take_along_axis(weights, index, axis=1), 0.0).astype(np.float32)
    index.setflags(write=False)
    taps.setflags(write=False)
    return index, taps


def _resize_rgb(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """A float ``[H, W, 3]`` image resized to ``[height, width, 3]`` by :func:`resample_matrix` on each axis."""
    for axis, n in ((0, height), (1, width)):
        index, taps = _taps(n, image.shape[axis])
        moved = np.moveaxis(image, axis, 0)
        image = np.moveaxis(np.einsum("ok,ok...->o...", taps, moved[index]), 0, axis)
    return image


@functools.lru_cache(maxsize=1)
def load_photos(side: int = PHOTO_SIDE) -> tuple[np.ndarray, ...]:
    """The :data:`PHOTOS` as float32 RGB ``[H, W, 3]`` in 0..255, shrunk so the short side is ``side`` (read-only)."""
    out = []
    for module, name in PHOTOS:
        photo = _read_photo(module, name)[..., :3].astype(np.float32)
        h, w = photo.shape[:2]
        factor = side / min(h, w)
        photo = _resize_rgb(photo, round(h * factor), round(w * factor)).astype(np.float32)
        photo.setflags(write=False)  # shared by every scene through the cache
        out.append(photo)
    return tuple(out)


@functools.lru_cache(maxsize=1)
def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: images ``[1797, 8, 8]`` uint8 with values 0..16, and labels ``[1797]`` int64."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images.astype(np.uint8), digits.target.astype(np.int64)


def _background(rng: np.random.Generator, photos: Sequence[np.ndarray], size: int) -> np.ndarray:
    """A random square crop (35-100 % of the short side, anywhere, maybe mirrored) of a random photo at ``size``."""
    photo = photos[rng.integers(len(photos))]
    h, w = photo.shape[:2]
    side = int(rng.uniform(0.35, 1.0) * min(h, w))
    y, x = rng.integers(h - side + 1), rng.integers(w - side + 1)
    crop = photo[y : y + side, x : x + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return _resize_rgb(crop, size, size).astype(np.float32)


def upscale_digit(digit: np.ndarray, height: int, width: int) -> np.ndarray:
    """A digit's opacity ``value / 16`` (``[8, 8]``, values 0..16) bilinearly resized to ``[height, width]``.

    Zero beyond the 8x8 border, so the digit's outer pixels fade out instead of being smeared to the patch edge.
    """
    alpha = digit.astype(np.float32) / 16
    rows, cols = (resample_matrix(n, 8, zero_outside=True) for n in (height, width))
    return np.clip(rows @ alpha @ cols.T, 0.0, 1.0)


def _upscale(
    rng: np.random.Generator, digit: np.ndarray, scale: tuple[float, float], aspect: tuple[float, float]
) -> np.ndarray:
    """The digit upscaled ``scale``x on average, with a random aspect (height / width)."""
    s = rng.uniform(*scale)
    a = np.exp(rng.uniform(np.log(aspect[0]), np.log(aspect[1])))  # log-uniform: as many tall as wide digits
    lo, hi = round(8 * scale[0]), round(8 * scale[1])
    h = int(np.clip(round(8 * s * np.sqrt(a)), lo, hi))
    w = int(np.clip(round(8 * s / np.sqrt(a)), lo, hi))
    return upscale_digit(digit, h, w)


def _paste(alpha: np.ndarray, y: int, x: int, size: int) -> np.ndarray:
    """``alpha`` placed with its top-left corner at ``(y, x)`` on a ``size x size`` canvas, cut by the border."""
    canvas = np.zeros((size, size), np.float32)
    h, w = alpha.shape
    y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + h, size), min(x + w, size)
    if y1 > y0 and x1 > x0:
        canvas[y0:y1, x0:x1] = alpha[y0 - y : y1 - y, x0 - x : x1 - x]
    return canvas


def _place(
    rng: np.random.Generator,
    alpha: np.ndarray,
    size: int,
    visible: list[np.ndarray],
    totals: list[int],
    *,
    max_hidden: float,
    max_cut: float,
    attempts: int,
) -> np.ndarray | None:
    """A canvas-sized opacity of ``alpha`` at a random position that keeps every digit readable; None if none found.

    The patch may stick out of the image by ``max_cut`` of its size; a position is kept when the border cuts off
    at most ``max_cut`` of the new digit's strokes and every earlier digit keeps at least ``1 - max_hidden`` of
    its strokes (``totals``) visible under the new one.
    """
    h, w = alpha.shape
    total = int((alpha > STROKE_ALPHA).sum())
    my, mx = int(max_cut * h), int(max_cut * w)
    for attempt in range(attempts):
        if attempt == attempts - 1 and not visible:
            # The first digit always fits: inside the image nothing is cut and nothing lies below it.
            y, x = int(rng.integers(size - h + 1)), int(rng.integers(size - w + 1))
        else:
            y, x = int(rng.integers(-my, size - h + my + 1)), int(rng.integers(-mx, size - w + mx + 1))
        canvas = _paste(alpha, y, x, size)
        stroke = canvas > STROKE_ALPHA
        if stroke.sum() < (1 - max_cut) * total:
            continue
        if all((v & ~stroke).sum() >= (1 - max_hidden) * t for v, t in zip(visible, totals, strict=True)):
            return canvas
    return None


def _ink(rng: np.random.Generator, image: np.ndarray, stroke: np.ndarray) -> np.ndarray:
    """An RGB ink colour far from ``image``'s mean colour under ``stroke``: each channel near the other extreme.

    Near-black on white, near-white on black, blue on orange, cyan on red: a grey ink alone reads faintly on
    saturated mid-luminance patches (an orange petal and white ink differ little in luminance). Each channel is
    drawn within 50 levels of its extreme, so the ink is not one exact colour a detector could key on.
    """
    far = image[stroke].mean(axis=0) < 128  # channels whose extreme away from the background is 255
    return np.where(far, rng.uniform(205, 255, 3), rng.uniform(0, 50, 3)).astype(np.float32)


def tight_box(mask: np.ndarray) -> np.ndarray:
    """The ``(ymin, xmin, ymax, xmax)`` float32 box of a non-empty ``[H, W]`` mask: last row and column + 1."""
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return np.array([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1], np.float32)


def generate_scene(
    rng: np.random.Generator,
    digit_images: np.ndarray,
    digit_labels: np.ndarray,
    *,
    size: int = 96,
    num_digits: tuple[int, int] = (1, 6),
    scale: tuple[float, float] = (2.0, 5.0),
    aspect: tuple[float, float] = (0.7, 1.4),
    max_hidden: float = 0.35,
    max_cut: float = 0.2,
    attempts: int = 30,
    photos: Sequence[np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """One scene of digits drawn from ``digit_images`` (``[K, 8, 8]``, values 0..16) with classes ``digit_labels``.

    Args:
      rng: all randomness of the scene.
      size: the image is ``size x size``.
      num_digits: the number of digits is uniform in this inclusive range; a digit that finds no place in
        ``attempts`` tries is left out, so a crowded scene may hold fewer (never none).
      scale, aspect: a digit's mean upscaling factor (uniform) and height / width ratio (log-uniform).
      max_hidden: the most of a digit's strokes that the border and later digits together may hide.
      max_cut: the most of a digit's strokes that the image border may cut off.
      photos: background photos (default :func:`load_photos`).

    Returns:
      ``image`` uint8 ``[S, S, 3]``; ``boxes`` float32 ``[N, 4]`` ``(ymin, xmin, ymax, xmax)``, the tight boxes
      of ``masks``; ``box_labels`` int64 ``[N]``; ``masks`` bool ``[N, S, S]``, the visible strokes of each digit
      (disjoint); ``segmentation`` uint8 ``[S, S]``, 0 for background and ``1 + label`` on a digit's mask; and
      ``digit_index`` int64 ``[N]``, the row of ``digit_images`` each digit is. Digits are in painting order:
      a later one lies on top of the earlier ones.
    """
    photos = load_photos() if photos is None else photos
    image = _background(rng, photos, size)
    visible: list[np.ndarray] = []  # visible strokes of each placed digit, updated as later ones cover them
    totals: list[int] = []  # each digit's stroke count before the border and later digits hide any
    chosen: list[int] = []
    for _ in range(int(rng.integers(num_digits[0], num_digits[1] + 1))):
        k = int(rng.integers(len(digit_images)))
        alpha = _upscale(rng, digit_images[k], scale, aspect)
        canvas = _place(rng, alpha, size, visible, totals, max_hidden=max_hidden, max_cut=max_cut, attempts=attempts)
        if canvas is None:
            continue
        stroke = canvas > STROKE_ALPHA
        a = canvas[..., None]
        image = (1 - a) * image + a * _ink(rng, image, stroke)
        visible = [v & ~stroke for v in visible] + [stroke]
        totals.append(int((alpha > STROKE_ALPHA).sum()))
        chosen.append(k)
    masks = np.stack(visible)
    labels = np.asarray(digit_labels, np.int64)[chosen]
    segmentation = np.zeros((size, size), np.uint8)
    for mask, label in zip(masks, labels, strict=True):
        segmentation[mask] = 1 + label
    return {
        "image": np.clip(np.round(image), 0, 255).astype(np.uint8),
        "boxes": np.stack([tight_box(m) for m in masks]),
        "box_labels": labels,
        "masks": masks,
        "segmentation": segmentation,
        "digit_index": np.asarray(chosen, np.int64),
    }


def generate_split(seed: int, num_scenes: int, pool: np.ndarray, **scene_args) -> Iterator[dict[str, np.ndarray]]:
    """Scenes ``0 .. num_scenes - 1`` of digits drawn from ``pool`` (indices into scikit-learn's digits).

    Scene ``i`` is :func:`generate_scene` with ``np.random.default_rng([seed, i])``, so it depends on
    ``seed``, ``i``, the pool and ``scene_args`` only (not on ``num_scenes``: a shorter split is a prefix).
    Its ``digit_index`` holds scikit-learn digit indices (rows of ``load_digits().images``).
    """
    images, labels = load_digits_arrays()
    pool = np.asarray(pool, np.int64)
    images, labels, photos = images[pool], labels[pool], load_photos()
    for i in range(num_scenes):
        scene = generate_scene(np.random.default_rng([seed, i]), images, labels, photos=photos, **scene_args)
        scene["digit_index"] = pool[scene["digit_index"]]
        yield scene

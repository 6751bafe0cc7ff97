"""Pure image functions behind the preprocessing ops of :mod:`mlcv.data.ops`.

Each takes an ``HxWxC`` NumPy image and its parameters (an angle, a factor,
a box) and returns a new image. They compute in float and return the input
dtype, rounding and clipping integer images to its range, so an op keeps
uint8 data uint8.
"""

from __future__ import annotations

import numpy as np
from skimage import transform as sk_transform


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def restore_dtype(out: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``out`` cast to ``dtype``; integer types are rounded and clipped to their range."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(dtype)
    return out.astype(dtype, copy=False)


def as_float(img: np.ndarray) -> np.ndarray:
    """``img`` itself if floating point, else a float32 copy."""
    return img if np.issubdtype(img.dtype, np.floating) else img.astype(np.float32)


def cutout_image(img: np.ndarray, cy: int, cx: int, size: int, fill: float = 0.0) -> np.ndarray:
    """A copy of ``img`` with rows/cols ``c - size//2 .. c - size//2 + size - 1`` set to ``fill``, clipped to the image.

    Even sizes reach one pixel further above/left of the centre, as in DeVries & Taylor's code. Keeps the dtype.
    """
    out = img.copy()
    y0, x0 = cy - size // 2, cx - size // 2
    out[max(y0, 0) : max(y0 + size, 0), max(x0, 0) : max(x0 + size, 0)] = fill
    return out


def rotate_image(img: np.ndarray, degrees: float) -> np.ndarray:
    """Rotates counter-clockwise as displayed (like ``np.rot90``) about the centre; bilinear, zero outside."""
    # skimage's Cython warp rejects read-only float input. Its default clip=True clips to the input's range, which
    # fills the zero corners of a constant image with the constant (bilinear cannot overshoot anyway).
    x = np.require(as_float(img), requirements="W")
    out = sk_transform.rotate(x, degrees, order=1, mode="constant", cval=0, preserve_range=True, clip=False)
    return restore_dtype(out, img.dtype)


def resize_image(img: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Bilinear resize to ``size`` (int: square), keeping the dtype; no anti-aliasing.

    Half-pixel centres as PIL and PyTorch's ``align_corners=False``, edge extension at the border (skimage's default
    ``"reflect"`` would blend the first row with the second when upsampling).
    """
    h, w = _hw(size)
    out = sk_transform.resize(
        img, (h, w, *img.shape[2:]), order=1, mode="edge", anti_aliasing=False, preserve_range=True, clip=False
    )
    return restore_dtype(out, img.dtype)


def center_crop_image(img: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """The central ``size`` window (int: square); an odd margin leaves the extra pixel below / right."""
    h, w = _hw(size)
    if img.shape[0] < h or img.shape[1] < w:
        raise ValueError(f"center_crop({size}): image {img.shape} is smaller than the crop")
    y, x = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    return img[y : y + h, x : x + w]


def resized_crop_box(
    height: int, width: int, rng: np.random.Generator, scale: tuple[float, float], ratio: tuple[float, float]
) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of an Inception-style crop, as torchvision's ``RandomResizedCrop.get_params``.

    Area fraction uniform in ``scale``, w/h log-uniform in ``ratio``; after 10 draws that do not fit, the central
    crop of the whole image clamped to ``ratio``.
    """
    area = height * width
    log_ratio = np.log(ratio)
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = float(np.exp(rng.uniform(log_ratio[0], log_ratio[1])))
        w = int(round(np.sqrt(target_area * aspect)))
        h = int(round(np.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def _centre_span(n_src: int, n_dst: int) -> tuple[slice, slice]:
    # Source and destination slices that centre the shorter of the two lengths in the longer.
    n, off = min(n_src, n_dst), abs(n_src - n_dst) // 2
    return (slice(off, off + n), slice(0, n)) if n_src >= n_dst else (slice(0, n), slice(off, off + n))


def zoom_image(img: np.ndarray, factor: float) -> np.ndarray:
    """Resizes by ``factor`` (``resize_image``), then centre-crops or zero-pads back to the input size and dtype."""
    h, w = img.shape[:2]
    zoomed = resize_image(img, (max(1, round(h * factor)), max(1, round(w * factor))))
    (sy, dy), (sx, dx) = _centre_span(zoomed.shape[0], h), _centre_span(zoomed.shape[1], w)
    out = np.zeros_like(img)
    out[dy, dx] = zoomed[sy, sx]
    return out


_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601; torchvision uses 0.2989 for red


def rgb_to_gray(img: np.ndarray) -> np.ndarray:
    """The luma of an HxWx3 image, HxWx1, in float (float32 for integer input)."""
    return (as_float(img) @ _LUMA)[..., None]


def adjust_brightness(img: np.ndarray, factor: float) -> np.ndarray:
    """``img * factor``; keeps the dtype (integer images rounded and clipped to the dtype's range)."""
    return restore_dtype(as_float(img) * factor, img.dtype)


def adjust_contrast(img: np.ndarray, factor: float) -> np.ndarray:
    """``factor * img + (1 - factor) * mean(gray)``, gray the luma for 3 channels, else the image; keeps the dtype."""
    x = as_float(img)
    mean = (rgb_to_gray(x) if x.shape[-1] == 3 else x).mean()
    return restore_dtype(factor * x + (1 - factor) * mean, img.dtype)


def adjust_saturation(img: np.ndarray, factor: float) -> np.ndarray:
    """Blends with the per-pixel grey image: ``factor * img + (1 - factor) * gray``; 1 channel: unchanged."""
    if img.shape[-1] == 1:
        return img
    if img.shape[-1] != 3:
        raise ValueError(f"saturation needs 1 or 3 channels; image is {img.shape}")
    x = as_float(img)
    return restore_dtype(factor * x + (1 - factor) * rgb_to_gray(x), img.dtype)


def resize_short_image(img: np.ndarray, size: int) -> np.ndarray:
    """Resizes so that the shorter side is ``size``, keeping the aspect ratio (ImageNet evaluation's resize)."""
    h, w = img.shape[:2]
    scale = size / min(h, w)
    return resize_image(img, (max(1, round(h * scale)), max(1, round(w * scale))))

"""Integral images (summed-area tables) and rectangle sums in four look-ups.

The integral image of ``i`` holds at ``(y, x)`` the sum of every pixel above
and to the left of it, inclusive. The course builds it with the single recurrence
of its eq. 46, ``ii(x, y) = i(x, y) + ii(x - 1, y) + ii(x, y - 1) - ii(x - 1, y - 1)``,
one pass over the image in raster order. mlcv computes the same table as two
cumulative sums, one per axis (Viola and Jones's column sum ``s(x, y) = s(x, y - 1) + i(x, y)``
then ``ii(x, y) = ii(x - 1, y) + s(x, y)``): vectorised, and exact in integers; the test
checks it against eq. 46 run pixel by pixel.

Everything works on the last two axes, so a stack of windows or images is one
call. The *padded* form has a leading row and column of zeros: then the sum of
the rectangle ``[y0, y1) x [x0, x1)`` is ``ii[y1, x1] - ii[y0, x1] - ii[y1, x0] + ii[y0, x0]``
with no special case at the image border.
"""

from __future__ import annotations

import numpy as np


def integral_image(image: np.ndarray, *, pad: bool = False, dtype: type | None = None) -> np.ndarray:
    """The integral image of ``image`` over its last two axes (rows, columns).

    Args:
      image: ``(..., H, W)`` array.
      pad: prepend a zero row and column, giving ``(..., H + 1, W + 1)``, so that
        :func:`rect_sum` needs no border checks.
      dtype: accumulation dtype; default int64 for integer input, float64 otherwise,
        so that sums of many pixels stay exact.

    Returns:
      ``ii`` with ``ii[..., y, x] = image[..., :y + 1, :x + 1].sum()`` (unpadded), or
      ``ii[..., y, x] = image[..., :y, :x].sum()`` (padded).
    """
    image = np.asarray(image)
    if image.ndim < 2:
        raise ValueError(f"integral_image needs at least 2 dimensions, got shape {image.shape}")
    if dtype is None:
        dtype = np.int64 if np.issubdtype(image.dtype, np.integer) or image.dtype == bool else np.float64
    # The column recurrence s(x, y) = s(x, y - 1) + i(x, y), then the row recurrence ii(x, y) = ii(x - 1, y) + s(x, y).
    s = np.cumsum(image, axis=-2, dtype=dtype)
    ii = np.cumsum(s, axis=-1, dtype=dtype)
    if pad:
        ii = np.pad(ii, [(0, 0)] * (ii.ndim - 2) + [(1, 0), (1, 0)])
    return ii


def rect_sum(ii: np.ndarray, x0, y0, x1, y1) -> np.ndarray:
    """Sums of the rectangles ``[y0, y1) x [x0, x1)`` from a *padded* integral image, four look-ups each.

    ``ii`` is ``(..., H + 1, W + 1)``; the corner coordinates broadcast against
    each other (one rectangle, or arrays of them), and the result has shape
    ``ii.shape[:-2] + broadcast(x0, y0, x1, y1).shape``.
    """
    x0, y0, x1, y1 = (np.asarray(v, dtype=np.intp) for v in (x0, y0, x1, y1))
    return ii[..., y1, x1] - ii[..., y0, x1] - ii[..., y1, x0] + ii[..., y0, x0]


def window_mean_std(
    ii: np.ndarray, ii2: np.ndarray, x0, y0, x1, y1, *, min_std: float = 1e-6
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of the pixels of each rectangle, from the padded integral images of x and x**2.

    ``var = E[x^2] - E[x]^2``, four look-ups in each table. ``min_std`` floors
    the result so that flat windows do not divide by zero downstream.
    """
    x0, y0, x1, y1 = (np.asarray(v, dtype=np.intp) for v in (x0, y0, x1, y1))
    n = ((x1 - x0) * (y1 - y0)).astype(np.float64)
    mean = rect_sum(ii, x0, y0, x1, y1) / n
    var = rect_sum(ii2, x0, y0, x1, y1) / n - mean**2
    return mean, np.sqrt(np.maximum(var, min_std**2))

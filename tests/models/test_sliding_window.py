"""The sliding-window baseline and its fully convolutional twin: equal logits, checked against windows cut by hand.

The outside reference is a window written with explicit NumPy slicing in the test (zeros around the image
where the window leaves it), classified by the module's own ``__call__``.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from mlcv.models.sliding_window import (
    PatchClassifier,
    fully_convolutional_logits,
    sliding_window_logits,
)

# XLA's RngBitGenerator keys initialise in a fraction of threefry's compile time on a CPU.
KEY = jax.random.key(0, impl="rbg")
PATCH = 7
MODEL = PatchClassifier(num_classes=5, patch=PATCH, features=(4, 6), hidden=8)  # k = 3: fc is a 3x3 conv


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, 24, 20, 3)).astype(np.float32)
    variables = MODEL.init(KEY, np.zeros((1, PATCH, PATCH, 3), np.float32))
    # Non-zero biases, so a bias added twice or forgotten in the convolutional version shows.
    variables = jax.tree.map(lambda p: p + 0.1 * rng.normal(size=p.shape).astype(np.float32), variables)
    return image, variables


def _window(image: np.ndarray, b: int, row: int, col: int) -> np.ndarray:
    """The ``PATCH x PATCH`` window centred on (row, col) of image ``b``, zeros outside the image."""
    r = PATCH // 2
    height, width, channels = image.shape[1:]
    window = np.zeros((PATCH, PATCH, channels), image.dtype)
    top, bottom = max(row - r, 0), min(row + r + 1, height)
    left, right = max(col - r, 0), min(col + r + 1, width)
    window[top - (row - r) : bottom - (row - r), left - (col - r) : right - (col - r)] = image[
        b, top:bottom, left:right
    ]
    return window


def test_sliding_window_equals_fully_convolutional(setup):
    image, variables = setup
    # A chunk that does not divide the 960 windows: the last, partial chunk is cut back correctly.
    windowed = np.asarray(sliding_window_logits(MODEL, variables, image, PATCH, chunk=97))
    dense = np.asarray(fully_convolutional_logits(MODEL, variables, image, PATCH))
    assert windowed.shape == dense.shape == (2, 24, 20, 5)
    np.testing.assert_allclose(windowed, dense, atol=1e-4, rtol=1e-4)


def test_one_pixel_equals_the_classifier_on_its_window(setup):
    image, variables = setup
    b, row, col = 1, 11, 8  # an interior pixel: its window lies inside the image
    window = image[b, row - 3 : row + 4, col - 3 : col + 4]
    expected = np.asarray(MODEL.apply(variables, window[None]))[0]
    np.testing.assert_allclose(
        np.asarray(sliding_window_logits(MODEL, variables, image, PATCH))[b, row, col], expected, atol=1e-5
    )
    np.testing.assert_allclose(
        np.asarray(fully_convolutional_logits(MODEL, variables, image, PATCH))[b, row, col], expected, atol=1e-4
    )


@pytest.mark.parametrize(("row", "col"), [(0, 0), (23, 19), (0, 12)])
def test_border_pixels_see_zero_padding(setup, row, col):
    """Corners and an edge: the window around the pixel is zeros where it leaves the image (not a reflection)."""
    image, variables = setup
    window = _window(image, 0, row, col)
    if (row, col) == (0, 0):  # the corner's window, written out: a 3-pixel zero border on top and left
        np.testing.assert_array_equal(window[:3], 0)
        np.testing.assert_array_equal(window[:, :3], 0)
        np.testing.assert_array_equal(window[3:, 3:], image[0, :4, :4])
    expected = np.asarray(MODEL.apply(variables, window[None]))[0]
    for fn in (sliding_window_logits, fully_convolutional_logits):
        np.testing.assert_allclose(np.asarray(fn(MODEL, variables, image, PATCH))[0, row, col], expected, atol=1e-4)
    reflected = np.pad(image[0], ((3, 3), (3, 3), (0, 0)), mode="reflect")[row : row + PATCH, col : col + PATCH]
    assert not np.allclose(np.asarray(MODEL.apply(variables, reflected[None]))[0], expected, atol=1e-3)


def test_even_patch_raises(setup):
    image, variables = setup
    with pytest.raises(ValueError, match="odd"):
        sliding_window_logits(MODEL, variables, image, 6)
    with pytest.raises(ValueError, match="odd"):
        fully_convolutional_logits(MODEL, variables, image, 8)
    with pytest.raises(ValueError, match="odd"):
        PatchClassifier(num_classes=2, patch=16).init(KEY, np.zeros((1, 16, 16, 3), np.float32))


def test_patch_must_match_the_model(setup):
    image, variables = setup
    with pytest.raises(ValueError, match="patch=9"):
        sliding_window_logits(MODEL, variables, image, 9)

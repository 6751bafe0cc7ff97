"""Local descriptors for bag of visual words: raw patches on a regular grid of random scale, or SIFT.

A set of descriptors per image is held as a padded array ``(n_images, m, d)``
with a boolean ``mask`` ``(n_images, m)`` marking the real ones, so that
images with different numbers of keypoints (SIFT) batch like the fixed grid.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def grid_centres(height: int, width: int, step: int) -> np.ndarray:
    """(m, 2) row and column centres of a regular grid with spacing ``step``, centred in the image."""
    rows = np.arange(0, height, step, dtype=np.float32)
    cols = np.arange(0, width, step, dtype=np.float32)
    rows += (height - 1 - rows[-1]) / 2
    cols += (width - 1 - cols[-1]) / 2
    r, c = np.meshgrid(rows, cols, indexing="ij")
    return np.stack([r.ravel(), c.ravel()], 1)


def grid_keypoints(key: jax.Array, n_images: int, height: int, width: int, step: int, sizes: tuple[float, float]):
    """Keypoints ``(n_images, m, 3)`` as (row, col, size): the grid of :func:`grid_centres` in every image.

    Each keypoint's size (the side of its square patch, in pixels) is drawn
    uniformly from ``sizes = (smallest, largest)``, independently per image and
    point, so that one codebook sees every scale.
    """
    centres = grid_centres(height, width, step)
    size = np.asarray(jax.random.uniform(key, (n_images, len(centres), 1), minval=sizes[0], maxval=sizes[1]))
    return np.concatenate([np.broadcast_to(centres, (n_images, *centres.shape)), size], -1)


@functools.partial(jax.jit, static_argnames=("samples",))
def sample_patches(images: jax.Array, keypoints: jax.Array, samples: int) -> jax.Array:
    """Square patches resampled to ``samples x samples`` pixels: (n_images, m, samples * samples * channels).

    ``images`` is (n, h, w, c); a keypoint (row, col, size) covers the square of
    side ``size`` around (row, col), read by bilinear interpolation, pixels
    beyond the border repeating the edge. Patches of every size so become
    vectors of one length; a patch larger than ``samples`` pixels is
    subsampled, not low-pass filtered first.
    """
    offsets = jnp.linspace(-0.5, 0.5, samples)

    def one_image(image, points):
        rows = points[:, 0, None, None] + points[:, 2, None, None] * offsets[None, :, None]
        cols = points[:, 1, None, None] + points[:, 2, None, None] * offsets[None, None, :]
        rows, cols = jnp.broadcast_arrays(rows, cols)

        def channel(plane):
            return jax.scipy.ndimage.map_coordinates(plane, [rows, cols], order=1, mode="nearest")

        patches = jax.vmap(channel, in_axes=-1, out_axes=-1)(image)  # (m, samples, samples, c)
        return patches.reshape(points.shape[0], -1)

    return jax.vmap(one_image)(images, keypoints)


def normalise_patches(patches: np.ndarray, eps: float = 1e-2) -> np.ndarray:
    """Each patch minus its mean, over its standard deviation (+ ``eps``): invariant to brightness and contrast.

    ``eps`` (in the [0, 1] intensity units of the images) keeps flat patches
    from blowing their noise up into strong patterns.
    """
    centred = patches - patches.mean(-1, keepdims=True)
    return centred / (centred.std(-1, keepdims=True) + eps)


def patch_descriptors(
    key: jax.Array, images: np.ndarray, step: int, sizes: tuple[float, float], samples: int, eps: float = 1e-2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised raw patches on the random-scale grid: (descriptors, mask, keypoints).

    A colour image gives colour patches (the channels side by side), a grey
    one grey patches; every image has the same grid, so the mask is all true.
    ``eps`` is :func:`normalise_patches`'.
    """
    n, h, w, _ = images.shape
    points = grid_keypoints(key, n, h, w, step, sizes)
    desc = normalise_patches(np.asarray(sample_patches(jnp.asarray(images, jnp.float32), points, samples)), eps)
    return desc, np.ones(desc.shape[:2], bool), points


def sift_descriptors(
    images: np.ndarray, *, upsampling: int = 2, c_dog: float = 0.004
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scikit-image's SIFT (difference-of-Gaussians keypoints, 128-d descriptors): (descriptors, mask, keypoints).

    Colour images are converted to intensity (the channel mean) first: SIFT
    here is a grey descriptor. ``c_dog`` is the DoG contrast threshold; tiny
    images need one lower than scikit-image's default to yield keypoints.
    Images with no keypoint get an all-false mask row. Keypoints are (row,
    col, size) with size the keypoint's sigma.
    """
    from skimage.feature import SIFT

    grey = np.asarray(images, np.float64).mean(-1)
    found = []
    for image in grey:  # one scikit-image call per image: its detector takes one image at a time
        sift = SIFT(upsampling=upsampling, c_dog=c_dog)
        try:
            sift.detect_and_extract(image)
            found.append((sift.descriptors.astype(np.float32), np.c_[sift.positions, sift.sigmas].astype(np.float32)))
        except RuntimeError:  # scikit-image raises when an image has no keypoint left
            found.append((np.zeros((0, 128), np.float32), np.zeros((0, 3), np.float32)))
    m = max(1, max(len(d) for d, _ in found))
    desc = np.zeros((len(found), m, 128), np.float32)
    points = np.zeros((len(found), m, 3), np.float32)
    mask = np.zeros((len(found), m), bool)
    for i, (d, p) in enumerate(found):
        desc[i, : len(d)], points[i, : len(p)], mask[i, : len(d)] = d, p, True
    return desc, mask, points

"""Views of object instances for metric learning by instance: each of scikit-image's 100 LFW faces seen 8 ways.

An identity here is an instance, one particular face image, not a person: :func:`face_views` makes ``V`` views of
each face by a fixed-seed augmentation (a small rotation, shift and mirror, and a change of brightness and
contrast), so that a model learns which views come from the same image. NumPy and SciPy only.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

NUM_FACES = 100  # lfw_subset holds the 100 faces first, then 100 non-faces
VIEWS = 8
SEED = 0
MAX_SHIFT_PX = 2.0
MAX_DEGREES = 10.0
MAX_PHOTOMETRIC = 0.10  # brightness and contrast: factors in [0.9, 1.1]


def faces() -> np.ndarray:
    """The 100 faces of ``skimage.data.lfw_subset()`` as uint8 ``[100, 25, 25]`` (the ``faces`` dataset's pixels)."""
    from skimage import data

    return np.round(data.lfw_subset()[:NUM_FACES] * 255).astype(np.uint8)


def view(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random view of a grey uint8 image ``[H, W]``, uint8 of the same shape.

    A mirror with probability 1/2, then a rotation uniform in +-10 degrees about the centre and a shift uniform in
    +-2 px on each axis (bilinear; pixels from outside the image repeat its border), then contrast and brightness
    factors uniform in [0.9, 1.1] (contrast about the view's mean), rounded and clipped to 0..255.
    """
    x = image.astype(np.float64)
    if rng.random() < 0.5:
        x = x[:, ::-1]
    theta = np.deg2rad(rng.uniform(-MAX_DEGREES, MAX_DEGREES))
    shift = rng.uniform(-MAX_SHIFT_PX, MAX_SHIFT_PX, size=2)
    contrast, brightness = 1 + rng.uniform(-MAX_PHOTOMETRIC, MAX_PHOTOMETRIC, size=2)
    # Output pixel o samples input M (o - c - shift) + c: a rotation by theta about the centre c, then the shift.
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    centre = (np.array(x.shape) - 1) / 2
    x = ndimage.affine_transform(x, rotation, offset=centre - rotation @ (centre + shift), order=1, mode="nearest")
    mean = x.mean()
    x = ((x - mean) * contrast + mean) * brightness
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def face_views(views: int = VIEWS, seed: int = SEED) -> np.ndarray:
    """``views`` views of each of the 100 faces, uint8 ``[100, views, 25, 25]``, drawn face by face from one
    generator seeded with ``seed``: the same pixels on every machine."""
    rng = np.random.default_rng(seed)
    return np.stack([np.stack([view(face, rng) for _ in range(views)]) for face in faces()])

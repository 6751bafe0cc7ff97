"""Training and evaluation windows for the face detector: positives from ``faces``, negatives from face-free images.

Positives are the faces of the built-in ``faces`` dataset (scikit-image's
``lfw_subset``) resized to the detector window, optionally with their mirror
images and a few random shifted / rescaled crops. Negatives come from
*scenes*: photographs and textures that ship inside scikit-image and
scikit-learn and show no human face, plus the non-face images of the
``faces`` split. Each split names its own scenes, so train, validation and
test negatives never share an image.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

# name -> loader of an RGB, RGBA or grey image; face-free (the cat and the horse are fine as non-faces).
_SKIMAGE_SCENES = (
    "brick",
    "cell",
    "checkerboard",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "colorwheel",
    "grass",
    "gravel",
    "horse",
    "hubble_deep_field",
    "immunohistochemistry",
    "logo",
    "microaneurysms",
    "moon",
    "page",
    "rocket",
    "shepp_logan_phantom",
    "text",
)
_SKLEARN_SCENES = ("china", "flower")
SCENES = tuple(sorted(_SKIMAGE_SCENES + _SKLEARN_SCENES))


def to_gray(image: np.ndarray) -> np.ndarray:
    """A float64 grey image in [0, 1] from a grey, RGB or RGBA image (uint8, bool or float)."""
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.float64)
    elif np.issubdtype(image.dtype, np.integer):
        image = image / 255.0
    image = image.astype(np.float64)
    if image.ndim == 3:
        # ITU-R 601 luma, the weights skimage's rgb2gray and OpenCV use
        image = image[..., :3] @ np.array([0.299, 0.587, 0.114])
    return image


def load_scene(name: str) -> np.ndarray:
    """A face-free scene of :data:`SCENES` as a grey float image in [0, 1]."""
    if name in _SKLEARN_SCENES:
        from sklearn.datasets import load_sample_image

        return to_gray(load_sample_image(f"{name}.jpg"))
    if name in _SKIMAGE_SCENES:
        from skimage import data

        loaders: dict[str, Callable[[], np.ndarray]] = {n: getattr(data, n) for n in _SKIMAGE_SCENES}
        return to_gray(loaders[name]())
    raise ValueError(f"unknown scene {name!r}; valid: {', '.join(SCENES)}")


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """Resizes ``(N, H, W)`` images to ``size`` x ``size`` (anti-aliased linear interpolation)."""
    from skimage.transform import resize as sk_resize

    images = np.asarray(images, np.float64)
    if images.shape[1:] == (size, size):
        return images.copy()
    # one call on the stack: the leading axis is kept, so no loop over images
    return sk_resize(images, (len(images), size, size), order=1, anti_aliasing=True, mode="edge")


def face_split(role: str, window: int, *, data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``faces`` split of ``role`` as ``(windows (N, window, window) in [0, 1], labels (N,))``."""
    from mlcv import data

    split = data.load_arrays("faces", role, data_dir=data_dir)
    return resize(split["image"][..., 0] / 255.0, window), split["label"].astype(np.int64)


def augment_faces(
    faces: np.ndarray, *, mirror: bool, jitter: int, rng: np.random.Generator, max_rotation: float = 0.0
) -> np.ndarray:
    """Faces, their mirror images, and ``jitter`` random variants of each.

    A variant is a random crop (up to 1/12 smaller, resized back) and, when
    ``max_rotation`` > 0, a rotation by a random angle in
    ``[-max_rotation, max_rotation]`` degrees about the centre (edge pixels
    repeated into the corners); each variant draws one crop and one angle for
    the whole stack.
    """
    from scipy.ndimage import rotate

    out = [faces]
    if mirror:
        out.append(faces[:, :, ::-1])
    base = np.concatenate(out)
    n, s, _ = base.shape
    for _ in range(jitter):
        side = int(rng.integers(s - max(1, s // 12), s + 1))
        x0, y0 = rng.integers(0, s - side + 1, size=2)
        variant = base
        if max_rotation > 0:
            angle = float(rng.uniform(-max_rotation, max_rotation))
            variant = rotate(base, angle, axes=(2, 1), reshape=False, order=1, mode="nearest")
        out.append(resize(variant[:, y0 : y0 + side, x0 : x0 + side], s))
    return np.concatenate(out)


@dataclasses.dataclass
class Level:
    """One level of a scene's pyramid: the image and its padded integral images of x and x**2."""

    scene: str
    factor: float
    image: np.ndarray
    ii: np.ndarray
    ii2: np.ndarray


def pyramid(name: str, image: np.ndarray, window: int, factor: float, max_side: int) -> list[Level]:
    """The image, downscaled first to at most ``max_side``, then by ``factor`` per level while a window fits."""
    from skimage.transform import rescale

    from mlcv.ops.integral import integral_image

    levels = []
    scale = min(1.0, max_side / max(image.shape))
    while min(image.shape) * scale >= window:
        img = image if scale == 1.0 else rescale(image, scale, anti_aliasing=True, mode="reflect")
        levels.append(Level(name, scale, img, integral_image(img, pad=True), integral_image(img**2, pad=True)))
        scale /= factor
    return levels


def paste_faces(
    scene: np.ndarray, faces: np.ndarray, sizes: tuple[int, ...], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A face-free scene with ``faces`` pasted on a grid, face ``i`` resized to ``sizes[i % len(sizes)]``.

    Each face sits at a random place inside its own grid cell (cells are 1.5x
    the largest size, so two faces never overlap); the scene is mirrored
    outwards when it has too few cells. Returns ``(image, boxes (N, 4))`` with
    the pasted faces' boxes ``(x0, y0, x1, y1)``: a detection test with known
    faces for splits whose photographs have none.
    """
    cell = int(1.5 * max(sizes))
    cols = max(1, scene.shape[1] // cell)
    rows = -(-len(faces) // cols)
    pad = max(0, rows * cell - scene.shape[0]), max(0, cols * cell - scene.shape[1])
    image = np.pad(scene, ((0, pad[0]), (0, pad[1])), mode="symmetric").copy()
    boxes = np.zeros((len(faces), 4))
    for i, face in enumerate(faces):  # a few dozen pastes of different sizes
        s = sizes[i % len(sizes)]
        r, c = divmod(i, cols)
        y0, x0 = r * cell + int(rng.integers(0, cell - s + 1)), c * cell + int(rng.integers(0, cell - s + 1))
        image[y0 : y0 + s, x0 : x0 + s] = resize(face[None], s)[0]
        boxes[i] = (x0, y0, x0 + s, y0 + s)
    return image, boxes

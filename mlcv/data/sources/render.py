"""Primitives of the rendered plane scenes (:mod:`mlcv.data.sources.planes`): photo textures, shapes, a z-buffer.

A surface (a plane of a stereo pair, a moving layer) carries a :class:`Texture` in its own coordinates ``(u, v)``
and, but for a background, a :class:`Shape` there. A view renders surfaces by inverse mapping: a hit test per
surface says, for each pixel, whether the surface covers it, how near it is and at which ``(u, v)``; :func:`front`
keeps the nearest and :func:`render` samples its texture there.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

_SKIMAGE_PHOTOS = ("astronaut", "camera", "coffee", "chelsea", "rocket", "brick", "grass", "gravel", "coins")
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, as mlcv.data.sources.stereo


@functools.cache
def photos() -> tuple[np.ndarray, ...]:
    """The texture photographs: grey float64, halved by 2x2 block means and smoothed with a Gaussian of sigma 0.6."""
    from scipy import ndimage
    from skimage import data
    from sklearn.datasets import load_sample_images

    out = []
    for img in [getattr(data, name)() for name in _SKIMAGE_PHOTOS] + list(load_sample_images().images):
        img = img.astype(np.float64)
        if img.ndim == 3:
            img = img[..., :3] @ _LUMA
        h, w = img.shape[0] // 2 * 2, img.shape[1] // 2 * 2
        img = img[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        out.append(ndimage.gaussian_filter(img, 0.8, mode="reflect"))
    return tuple(out)


def bilinear(image: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``image`` (H, W) at real positions ``(y, x)`` by bilinear interpolation; positions are clipped to the image."""
    h, w = image.shape
    y, x = np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)
    y0, x0 = np.minimum(np.floor(y).astype(int), h - 2), np.minimum(np.floor(x).astype(int), w - 2)
    fy, fx = y - y0, x - x0
    top = (1 - fx) * image[y0, x0] + fx * image[y0, x0 + 1]
    bottom = (1 - fx) * image[y0 + 1, x0] + fx * image[y0 + 1, x0 + 1]
    return (1 - fy) * top + fy * bottom


class Texture(NamedTuple):
    """A photo mapped onto a surface: surface point ``(u, v)`` shows photo pixel ``origin + scale * (v, u)``."""

    photo: int
    origin: tuple[float, float]
    scale: float
    mean: float
    contrast: float

    def sample(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Grey levels at surface coordinates ``(u, v)``: the photo's, standardized, then this mean and contrast."""
        img = photos()[self.photo]
        values = bilinear(img, self.origin[0] + self.scale * v, self.origin[1] + self.scale * u)
        return self.mean + self.contrast * (values - img.mean()) / img.std()


def random_texture(rng: np.random.Generator, v_range: tuple[float, float], u_range: tuple[float, float]) -> Texture:
    """A random texture whose photo crop covers surface coordinates ``v_range x u_range`` where the photo allows."""
    k = int(rng.integers(len(photos())))
    shape, scale = photos()[k].shape, float(rng.uniform(0.6, 1.1))
    origin = []
    for (lo, hi), size in zip((v_range, u_range), shape, strict=True):
        free = size - 1 - (hi - lo) * scale
        origin.append(float(rng.uniform(0.0, max(free, 0.0)) - lo * scale))
    return Texture(k, (origin[0], origin[1]), scale, float(rng.uniform(80, 175)), float(rng.uniform(20, 45)))


class Shape(NamedTuple):
    """A rectangle or an ellipse in surface coordinates: centre, half-sizes."""

    cy: float
    cx: float
    ry: float
    rx: float
    ellipse: bool

    def inside(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        du, dv = (u - self.cx) / self.rx, (v - self.cy) / self.ry
        return du**2 + dv**2 <= 1.0 if self.ellipse else (np.abs(du) <= 1.0) & (np.abs(dv) <= 1.0)


def random_shape(rng: np.random.Generator, height: int, width: int, size: tuple[float, float]) -> Shape:
    """A random shape centred in the image, half-sizes between ``size[0]`` and ``size[1]`` of the image's."""
    return Shape(
        float(rng.uniform(0, height - 1)),
        float(rng.uniform(0, width - 1)),
        float(rng.uniform(*size) * height),
        float(rng.uniform(*size) * width),
        bool(rng.random() < 0.5),
    )


# A view's hit test: (surface, x, y) -> (covers, depth key (larger = nearer), u, v).
Hit = Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


def front(surfaces: list, hit: Hit, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """The z-buffer: per position, the index of the nearest surface covering it (-1: none), its key, ``u``, ``v``."""
    label = np.full(x.shape, -1)
    best, us, vs = np.full(x.shape, -np.inf), np.zeros(x.shape), np.zeros(x.shape)
    for k, surface in enumerate(surfaces):
        covers, key, u, v = hit(surface, x, y)
        take = covers & (key > best)
        label, best = np.where(take, k, label), np.where(take, key, best)
        us, vs = np.where(take, u, us), np.where(take, v, vs)
    return label, best, us, vs


def render(surfaces: list, label: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Each pixel's surface texture at its ``(u, v)``."""
    out = np.zeros(label.shape)
    for k, surface in enumerate(surfaces):
        at = label == k
        out[at] = surface.texture.sample(u[at], v[at])
    return out


def grey_u8(x: np.ndarray) -> np.ndarray:
    """Float grey levels (H, W) as uint8 (H, W, 1), rounded and clipped to 0..255."""
    return np.clip(np.round(x), 0, 255).astype(np.uint8)[..., None]


def texture_over(rng: np.random.Generator, shape: Shape) -> Texture:
    """A random texture whose crop covers ``shape``'s bounding box (and a pixel around it)."""
    return random_texture(
        rng, (shape.cy - shape.ry - 1, shape.cy + shape.ry + 1), (shape.cx - shape.rx - 1, shape.cx + shape.rx + 1)
    )

"""Rendered scenes of textured planes: ``stereo_planes`` (rectified stereo pairs) and ``flow_layers`` (two frames).

Textures are grey crops of the real photographs that ship with scikit-image (astronaut, camera, coffee, chelsea,
rocket, brick, grass, gravel, coins) and scikit-learn (``load_sample_images``: china, flower), each halved by a
2x2 block mean and smoothed (Gaussian sigma 0.8) so that it has little detail finer than a pixel; every surface
gets a random photo, offset, scale (0.6-1.1 photo pixels per pixel), mean grey and contrast
(:mod:`mlcv.data.sources.render`).

Both datasets are rendered by exact inverse mapping, view by view: a surface carries its texture in its own
coordinates ``(u, v)``; for each pixel of a view, every surface says whether it covers the pixel and at which
``(u, v)``, the nearest covering surface wins (a z-buffer), and its texture is sampled there bilinearly. The
two views thus show the same texture point wherever a surface point is visible in both, with no resampling of
one view into the other; images are stored as uint8 without added noise.

``stereo_planes`` (64 x 128): a slanted background plane (disparity 1-4.5 px) and 2-5 rectangles or ellipses,
fronto-parallel or, half of them, slanted, at disparities 4.5-24 px. A plane's surface coordinates are its
left-view pixel coordinates, and its disparity is affine there, ``d = a + b x + c y``, as that of any plane of
a rectified pair is; the left pixel ``(y, x)`` matches the right pixel ``(y, x - d)``, and the right pixel
``(y, x_r)`` shows the plane's point ``x = (x_r + a + c y) / (1 - b)``. Nearer (larger disparity) wins. The
calibration is fixed: focal length ``FOCAL_PX`` = 100 px, baseline ``BASELINE_M`` = 0.1 m, so the depth in
metres is ``z = BASELINE_M * FOCAL_PX / d`` (0.42-10 m).

``flow_layers`` (64 x 96): a background and 2-4 layers (rectangles or ellipses) in a fixed front-to-back order;
between frame 1 and frame 2 each layer moves about its centre ``c`` by ``p2 = c + t + s R(theta) (p1 - c)``,
translation ``t`` up to +-6 px per axis, rotation up to +-5 degrees, scaling 0.95-1.05 (the background, a camera
motion, by at most +-2 px, +-1 degree, 0.98-1.02). A layer's surface coordinates are its frame-1 pixel
coordinates; the flow of a frame-1 pixel is ``p2 - p1`` of the layer it shows.

Occlusion is computed at the exact, continuous position of a pixel's match: a pixel is occluded when its match
falls outside the other view or the other view's nearest surface there is another one.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import tensorflow_datasets as tfds

from mlcv.data.sources import render
from mlcv.data.sources.render import Shape, Texture

STEREO_HEIGHT, STEREO_WIDTH = 64, 128
FLOW_HEIGHT, FLOW_WIDTH = 64, 96
FOCAL_PX = 100.0  # px: depth z = BASELINE_M * FOCAL_PX / disparity
BASELINE_M = 0.1  # m
MIN_DISPARITY, MAX_DISPARITY = 1.0, 24.0
SPLIT_SIZES = {"train": 400, "validation": 50, "test": 100}
# Record i of a split is the scene of seed SEED_BASE[split] + i: fixed seeds, disjoint between splits and datasets.
STEREO_SEED_BASE = {"train": 400_000, "validation": 500_000, "test": 600_000}
FLOW_SEED_BASE = {"train": 700_000, "validation": 800_000, "test": 900_000}
_FOREGROUND_DISPARITY = (4.5, 24.0)  # slanted planes stay inside; the background stays below


# --- stereo -------------------------------------------------------------------------------------------------


class Plane(NamedTuple):
    """A plane of a rectified pair: left-view disparity ``a + b x + c y`` over ``shape`` (None: everywhere)."""

    shape: Shape | None
    a: float
    b: float
    c: float
    texture: Texture


def _left_hit(p: Plane, x: np.ndarray, y: np.ndarray):
    covers = np.ones(x.shape, bool) if p.shape is None else p.shape.inside(x, y)
    return covers, p.a + p.b * x + p.c * y, x, y


def _right_hit(p: Plane, x: np.ndarray, y: np.ndarray):
    u = (x + p.a + p.c * y) / (1.0 - p.b)  # the left-view x whose point lands on right-view x
    covers = np.ones(x.shape, bool) if p.shape is None else p.shape.inside(u, y)
    return covers, p.a + p.b * u + p.c * y, u, y


def _planes(rng: np.random.Generator, height: int, width: int) -> list[Plane]:
    """The background plane and 2-5 foreground planes, each disparity range inside its band."""
    b, c = rng.uniform(-0.005, 0.005), rng.uniform(0.0, 0.02)  # a ground-like background: nearer below
    a = rng.uniform(1.7, 2.5) - min(b, 0.0) * (width - 1)
    pad = _FOREGROUND_DISPARITY[1] + 8
    planes = [Plane(None, a, b, c, render.random_texture(rng, (-4, height + 4), (-8, width + pad)))]
    lo, hi = _FOREGROUND_DISPARITY
    for _ in range(int(rng.integers(2, 6))):
        shape = render.random_shape(rng, height, width, (0.12, 0.3))
        d0 = rng.uniform(lo + 1.5, hi - 2.0)
        b, c = (rng.uniform(-0.08, 0.08), rng.uniform(-0.12, 0.12)) if rng.random() < 0.5 else (0.0, 0.0)
        spread = abs(b) * shape.rx + abs(c) * shape.ry
        if spread > min(d0 - lo, hi - d0):  # keep the plane's disparities inside the band
            b, c = np.array([b, c]) * min(d0 - lo, hi - d0) / spread
        tex = render.texture_over(rng, shape)
        planes.append(Plane(shape, float(d0 - b * shape.cx - c * shape.cy), float(b), float(c), tex))
    return planes


def stereo_scene(seed: int, height: int = STEREO_HEIGHT, width: int = STEREO_WIDTH) -> dict[str, np.ndarray]:
    """One rendered pair: ``left``, ``right`` (float grey), both views' ``disparity`` and ``occluded`` maps, ``labels``.

    ``occluded``: the left pixel's match ``x - d`` is outside the right view or shows another plane;
    ``occluded_right``: likewise for the right pixel's match ``x + d_right`` in the left view.
    """
    rng = np.random.default_rng(seed)
    planes = _planes(rng, height, width)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    lab_l, d_l, u_l, v_l = render.front(planes, _left_hit, x, y)
    lab_r, d_r, u_r, v_r = render.front(planes, _right_hit, x, y)
    match_l, match_r = x - d_l, x + d_r
    seen_l = (match_l >= 0) & (render.front(planes, _right_hit, match_l, y)[0] == lab_l)
    seen_r = (match_r <= width - 1) & (render.front(planes, _left_hit, match_r, y)[0] == lab_r)
    return {
        "left": render.render(planes, lab_l, u_l, v_l),
        "right": render.render(planes, lab_r, u_r, v_r),
        "disparity": d_l.astype(np.float32),
        "disparity_right": d_r.astype(np.float32),
        "occluded": ~seen_l,
        "occluded_right": ~seen_r,
        "labels": lab_l,
        "labels_right": lab_r,
    }


def stereo_record(seed: int) -> dict[str, np.ndarray]:
    """One ``stereo_planes`` record as stored."""
    s = stereo_scene(seed)
    full = np.ones(s["disparity"].shape, bool)  # rendered: every pixel has exact ground truth
    return {
        "image": render.grey_u8(s["left"]),
        "image_right": render.grey_u8(s["right"]),
        "disparity": s["disparity"],
        "disparity_right": s["disparity_right"],
        "disparity_mask": full,
        "disparity_right_mask": full.copy(),
        "occlusion": s["occluded"],
        "occlusion_right": s["occluded_right"],
        "focal_px": np.float64(FOCAL_PX),
        "baseline": np.float64(BASELINE_M),
    }


# --- flow ---------------------------------------------------------------------------------------------------


class Layer(NamedTuple):
    """A layer that moves by ``p2 = centre + shift + scale R(angle) (p1 - centre)``; points are ``(y, x)``."""

    shape: Shape | None
    centre: tuple[float, float]
    shift: tuple[float, float]
    angle: float  # radians, counter-clockwise in (x, y) with y down
    scale: float
    depth: float  # the z-buffer key: larger = nearer
    texture: Texture

    def forward(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Frame-2 position ``(x2, y2)`` of frame-1 point ``(x, y)``."""
        cos, sin = np.cos(self.angle), np.sin(self.angle)
        dx, dy = x - self.centre[1], y - self.centre[0]
        x2 = self.centre[1] + self.shift[1] + self.scale * (cos * dx - sin * dy)
        y2 = self.centre[0] + self.shift[0] + self.scale * (sin * dx + cos * dy)
        return x2, y2

    def backward(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Frame-1 point ``(x1, y1)`` that moves to frame-2 position ``(x, y)``."""
        cos, sin = np.cos(self.angle), np.sin(self.angle)
        dx = (x - self.centre[1] - self.shift[1]) / self.scale
        dy = (y - self.centre[0] - self.shift[0]) / self.scale
        return self.centre[1] + cos * dx + sin * dy, self.centre[0] - sin * dx + cos * dy


def _frame1_hit(layer: Layer, x: np.ndarray, y: np.ndarray):
    covers = np.ones(x.shape, bool) if layer.shape is None else layer.shape.inside(x, y)
    return covers, np.full(x.shape, layer.depth), x, y


def _frame2_hit(layer: Layer, x: np.ndarray, y: np.ndarray):
    u, v = layer.backward(x, y)
    covers = np.ones(x.shape, bool) if layer.shape is None else layer.shape.inside(u, v)
    return covers, np.full(x.shape, layer.depth), u, v


def _layers(rng: np.random.Generator, height: int, width: int) -> list[Layer]:
    """The background (a small camera motion) and 2-4 layers in front of it, back to front."""

    def motion(shift: float, degrees: float, scale: float) -> tuple:
        return (
            (float(rng.uniform(-shift, shift)), float(rng.uniform(-shift, shift))),
            float(np.deg2rad(rng.uniform(-degrees, degrees))),
            float(rng.uniform(1 - scale, 1 + scale)),
        )

    centre = ((height - 1) / 2, (width - 1) / 2)
    margin = 16
    bg = render.random_texture(rng, (-margin, height + margin), (-margin, width + margin))
    layers = [Layer(None, centre, *motion(2.0, 1.0, 0.02), 0.0, bg)]
    for k in range(int(rng.integers(2, 5))):
        shape = render.random_shape(rng, height, width, (0.12, 0.3))
        tex = render.texture_over(rng, shape)
        layers.append(Layer(shape, (shape.cy, shape.cx), *motion(6.0, 5.0, 0.05), float(k + 1), tex))
    return layers


def flow_scene(seed: int, height: int = FLOW_HEIGHT, width: int = FLOW_WIDTH) -> dict[str, np.ndarray]:
    """Two rendered frames ``frame1``, ``frame2`` (float grey), ``flow`` (H, W, 2) as (dx, dy), ``visible``, ``labels``.

    ``visible``: the frame-1 pixel's frame-2 position lies inside frame 2 and shows the same layer there.
    """
    rng = np.random.default_rng(seed)
    layers = _layers(rng, height, width)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    lab1, _, u1, v1 = render.front(layers, _frame1_hit, x, y)
    lab2, _, u2, v2 = render.front(layers, _frame2_hit, x, y)
    x2, y2 = np.zeros_like(x), np.zeros_like(y)
    for k, layer in enumerate(layers):
        at = lab1 == k
        x2[at], y2[at] = layer.forward(x[at], y[at])
    inside = (x2 >= 0) & (x2 <= width - 1) & (y2 >= 0) & (y2 <= height - 1)
    return {
        "frame1": render.render(layers, lab1, u1, v1),
        "frame2": render.render(layers, lab2, u2, v2),
        "flow": np.stack([x2 - x, y2 - y], axis=-1).astype(np.float32),
        "visible": inside & (render.front(layers, _frame2_hit, x2, y2)[0] == lab1),
        "labels": lab1,
    }


def flow_record(seed: int) -> dict[str, np.ndarray]:
    """One ``flow_layers`` record as stored."""
    s = flow_scene(seed)
    return {
        "image": render.grey_u8(s["frame1"]),
        "image_next": render.grey_u8(s["frame2"]),
        "flow": s["flow"],
        "flow_mask": s["visible"],
    }


# --- TFDS builders ------------------------------------------------------------------------------------------


def _tensor(shape: tuple[int, ...], dtype) -> tfds.features.Tensor:
    return tfds.features.Tensor(shape=shape, dtype=dtype)


class StereoPlanes(tfds.core.GeneratorBasedBuilder):
    """Rendered stereo pairs of textured, fronto-parallel and slanted planes with exact disparities and occlusions."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "400 / 50 / 100 64x128 pairs, disparities 1-24 px, seeds 400000 / 500000 / 600000 + i."}

    def _info(self) -> tfds.core.DatasetInfo:
        hw = (STEREO_HEIGHT, STEREO_WIDTH)
        return tfds.core.DatasetInfo(
            builder=self,
            description="Textured planes rendered into both views of a rectified pair (mlcv.data.sources.planes).",
            features=tfds.features.FeaturesDict(
                {
                    "image": _tensor((*hw, 1), np.uint8),
                    "image_right": _tensor((*hw, 1), np.uint8),
                    **{k: _tensor(hw, np.float32) for k in ("disparity", "disparity_right")},
                    **{
                        k: _tensor(hw, np.bool_)
                        for k in ("disparity_mask", "disparity_right_mask", "occlusion", "occlusion_right")
                    },
                    "focal_px": _tensor((), np.float64),
                    "baseline": _tensor((), np.float64),
                }
            ),
            disable_shuffling=True,  # record i is seed STEREO_SEED_BASE[split] + i
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # the photos ship with scikit-image and scikit-learn
        return {role: self._generate_examples(STEREO_SEED_BASE[role], n) for role, n in SPLIT_SIZES.items()}

    def _generate_examples(self, base: int, num: int):
        for i in range(num):
            yield i, stereo_record(base + i)


class FlowLayers(tfds.core.GeneratorBasedBuilder):
    """Two rendered frames of moving textured layers with the exact flow of frame 1 and its visibility in frame 2."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "400 / 50 / 100 64x96 frame pairs, seeds 700000 / 800000 / 900000 + i."}

    def _info(self) -> tfds.core.DatasetInfo:
        hw = (FLOW_HEIGHT, FLOW_WIDTH)
        return tfds.core.DatasetInfo(
            builder=self,
            description="Textured layers moved by a similarity transform each (mlcv.data.sources.planes).",
            features=tfds.features.FeaturesDict(
                {
                    "image": _tensor((*hw, 1), np.uint8),
                    "image_next": _tensor((*hw, 1), np.uint8),
                    "flow": _tensor((*hw, 2), np.float32),
                    "flow_mask": _tensor(hw, np.bool_),
                }
            ),
            disable_shuffling=True,  # record i is seed FLOW_SEED_BASE[split] + i
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        return {role: self._generate_examples(FLOW_SEED_BASE[role], n) for role, n in SPLIT_SIZES.items()}

    def _generate_examples(self, base: int, num: int):
        for i in range(num):
            yield i, flow_record(base + i)

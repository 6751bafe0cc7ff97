"""Synthetic depth images of articulated human-like bodies with per-pixel body-part labels.

A body is two ellipsoids (head, torso) and eight capsules (upper and lower arms and legs, left and
right distinct), posed with random joint angles within human-like limits, a random size, distance,
sideways offset and a small turn about the vertical axis. A pinhole camera at the origin looks down
+z (x right, y up); each pixel keeps the nearest surface over all primitives (a z-buffer, vectorised
over images and pixels). Depth is the camera z coordinate in metres; pixels that hit no part hold
:data:`BACKGROUND_DEPTH` (the background is removed, as in a segmented Kinect image).

Everything is a pure function of the seed: ``generate(seed, n)`` gives the same images every time.
"""

from __future__ import annotations

import numpy as np

BACKGROUND_DEPTH = 10.0
PART_NAMES = (
    "background",
    "head",
    "torso",
    "left_upper_arm",
    "right_upper_arm",
    "left_lower_arm",
    "right_lower_arm",
    "left_upper_leg",
    "right_upper_leg",
    "left_lower_leg",
    "right_lower_leg",
)
NUM_CLASSES = len(PART_NAMES)

# Unit-scale body (metres, pelvis at the origin, facing -z i.e. the camera). The person's left is +x:
# facing the camera, their left hand appears on the image's right.
_HEAD = ((0.0, 0.69, 0.0), (0.085, 0.115, 0.10))
_TORSO = ((0.0, 0.26, 0.0), (0.17, 0.32, 0.11))
_SHOULDER = (0.20, 0.47, 0.0)
_HIP = (0.09, -0.03, 0.0)
_UPPER_ARM, _LOWER_ARM = (0.29, 0.047), (0.28, 0.038)  # length, radius
_UPPER_LEG, _LOWER_LEG = (0.44, 0.072), (0.45, 0.052)
# Joint limits in degrees: abduction (sideways, away from the body) and flexion (forward).
_ARM_ABDUCTION, _ARM_FLEXION, _ELBOW = (0.0, 100.0), (-30.0, 90.0), (0.0, 120.0)
_LEG_ABDUCTION, _LEG_FLEXION, _KNEE = (0.0, 30.0), (-20.0, 70.0), (0.0, 90.0)


def _limb_direction(abduction: np.ndarray, flexion: np.ndarray, side: float) -> np.ndarray:
    """Unit vectors (..., 3) of a limb hanging down, swung ``abduction`` sideways and ``flexion`` forward."""
    a, f = np.radians(abduction), np.radians(flexion)
    return np.stack([side * np.sin(a) * np.cos(f), -np.cos(a) * np.cos(f), -np.sin(f)], -1)


def _yaw_matrix(yaw_deg: np.ndarray) -> np.ndarray:
    """Rotations (N, 3, 3) about the vertical (y) axis."""
    t = np.radians(yaw_deg)
    c, s, z, o = np.cos(t), np.sin(t), np.zeros_like(t), np.ones_like(t)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def camera_rays(size: int, focal: float) -> np.ndarray:
    """Unit ray directions (size*size, 3) of a pinhole camera with the principal point at the centre."""
    v, u = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    c = (size - 1) / 2
    d = np.stack([(u - c) / focal, -(v - c) / focal, np.ones_like(u, float)], -1).reshape(-1, 3)
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def _ray_sphere(rays: np.ndarray, centre: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Distance along each ray (N, R) to a sphere's near surface; inf on a miss. Rays start at the origin."""
    b = rays @ centre[..., None]  # (N, R, 1): projection of the centre on the ray
    h = b[..., 0] ** 2 - (centre**2).sum(-1)[:, None] + radius[:, None] ** 2
    t = b[..., 0] - np.sqrt(np.maximum(h, 0.0))
    return np.where((h >= 0) & (t > 0), t, np.inf)


def _ray_cylinder(rays: np.ndarray, a: np.ndarray, b: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Distance to the near side wall of the finite cylinder a-b (N, R); inf on a miss.

    A capsule is this cylinder united with two spheres at its ends, so the capsule's first hit is the
    smallest of the three; the cylinder's end discs lie inside the spheres and need no test.
    """
    axis = b - a
    length2 = (axis**2).sum(-1)[:, None]  # (N, 1)
    oa = -a  # ray origin minus a
    d_ax = rays @ axis[..., None]  # (N, R, 1)
    d_ax = d_ax[..., 0]
    oa_ax = (oa * axis).sum(-1)[:, None]
    d_oa = (rays @ oa[..., None])[..., 0]
    qa = length2 - d_ax**2
    qb = length2 * d_oa - oa_ax * d_ax
    qc = length2 * (oa**2).sum(-1)[:, None] - oa_ax**2 - radius[:, None] ** 2 * length2
    h = qb**2 - qa * qc
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (-qb - np.sqrt(np.maximum(h, 0.0))) / qa
    along = oa_ax + t * d_ax  # position of the hit along the axis, times |axis|
    ok = (h >= 0) & (qa > 1e-12) & (t > 0) & (along >= 0) & (along <= length2)
    return np.where(ok, t, np.inf)


def _ray_ellipsoid(rays: np.ndarray, centre: np.ndarray, radii: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """Distance to an ellipsoid (axes ``radii`` along the columns of ``rot``) along each ray; inf on a miss."""
    # In the ellipsoid's frame scaled to a unit sphere the test is a quadratic in t.
    o = -np.einsum("nji,nj->ni", rot, centre) / radii  # (N, 3)
    d = np.einsum("nji,rj->nri", rot, rays) / radii[:, None]  # (N, R, 3)
    qa = (d**2).sum(-1)
    qb = (d * o[:, None]).sum(-1)
    qc = (o**2).sum(-1)[:, None] - 1.0
    h = qb**2 - qa * qc
    t = (-qb - np.sqrt(np.maximum(h, 0.0))) / qa
    return np.where((h >= 0) & (t > 0), t, np.inf)


def render(
    rays: np.ndarray,
    ellipsoids: tuple[np.ndarray, np.ndarray, np.ndarray],
    capsules: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Z-buffers ellipsoids then capsules along ``rays`` (R, 3, unit, from the camera at the origin).

    Args:
      rays: unit ray directions, e.g. :func:`camera_rays`.
      ellipsoids: centres (N, E, 3), radii (N, E, 3), rotations (N, E, 3, 3).
      capsules: end points a (N, C, 3), b (N, C, 3) and radii (N, C).

    Returns:
      depth (N, R): camera z of the nearest surface, :data:`BACKGROUND_DEPTH` where none is hit;
      index (N, R): the primitive seen (ellipsoids 0..E-1, then capsules E..E+C-1), -1 on background.
    """
    hits = [_ray_ellipsoid(rays, *(x[:, i] for x in ellipsoids)) for i in range(ellipsoids[0].shape[1])]
    for i in range(capsules[0].shape[1]):
        a, b, r = (x[:, i] for x in capsules)
        hits.append(np.minimum.reduce([_ray_sphere(rays, a, r), _ray_sphere(rays, b, r), _ray_cylinder(rays, a, b, r)]))
    t = np.stack(hits, 1)  # (N, P, R)
    index = np.argmin(t, 1)
    nearest = np.take_along_axis(t, index[:, None], 1)[:, 0]
    hit = np.isfinite(nearest)
    depth = np.where(hit, nearest * rays[None, :, 2], BACKGROUND_DEPTH)
    return depth, np.where(hit, index, -1)


def _poses(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Random body parameters of ``n`` images, each drawn as one vector so the seed fixes them all."""

    def u(lo_hi: tuple[float, float], *shape: int) -> np.ndarray:
        return rng.uniform(lo_hi[0], lo_hi[1], (n, *shape))

    return {
        "scale": u((0.85, 1.15)),  # height
        "girth": u((0.85, 1.2)),  # radii of every part on top of the height
        "distance": u((3.0, 4.0)),
        "shift": u((-0.3, 0.3), 2) * np.array([1.0, 0.3]),
        "yaw": u((-30.0, 30.0)),
        "arm": np.stack([u(_ARM_ABDUCTION, 2), u(_ARM_FLEXION, 2), u(_ELBOW, 2)], -1),  # (n, side, 3)
        "leg": np.stack([u(_LEG_ABDUCTION, 2), u(_LEG_FLEXION, 2), u(_KNEE, 2)], -1),
    }


def _bodies(p: dict[str, np.ndarray]) -> tuple[tuple, tuple, np.ndarray]:
    """Primitives in camera coordinates and the 3-D centre of each of the 10 parts (N, 10, 3)."""
    n = len(p["scale"])
    s, g = p["scale"][:, None], p["girth"]
    rot = _yaw_matrix(p["yaw"])
    origin = np.stack([p["shift"][:, 0], p["shift"][:, 1] + 0.04 * p["scale"], p["distance"]], -1)

    def place(x: np.ndarray) -> np.ndarray:  # body frame (N, 3), already scaled -> camera frame
        return origin + np.einsum("nij,nj->ni", rot, x)

    e_centre = np.stack([place(s * np.array(c)) for c, _ in (_HEAD, _TORSO)], 1)
    e_radii = np.stack([s * g[:, None] * np.array(r) for _, r in (_HEAD, _TORSO)], 1)
    e_rot = np.repeat(rot[:, None], 2, 1)
    a_pts, b_pts, radii = [], [], []
    for segments, root, (upper, lower) in (
        (p["arm"], _SHOULDER, (_UPPER_ARM, _LOWER_ARM)),
        (p["leg"], _HIP, (_UPPER_LEG, _LOWER_LEG)),
    ):
        bend = 1.0 if segments is p["arm"] else -1.0  # elbows bend forward, knees backward
        ends = []
        for side, sign in ((0, 1.0), (1, -1.0)):  # left (+x), right (-x)
            abd, flex, joint = segments[:, side].T
            top = s * np.array(root) * np.array([sign, 1.0, 1.0])
            mid = top + s * upper[0] * _limb_direction(abd, flex, sign)
            end = mid + s * lower[0] * _limb_direction(abd, flex + bend * joint, sign)
            ends.append((top, mid, end))
        # Label order: left upper, right upper, left lower, right lower.
        for (top, mid, end), (length_radius, which) in (
            (ends[0], (upper, 0)),
            (ends[1], (upper, 0)),
            (ends[0], (lower, 1)),
            (ends[1], (lower, 1)),
        ):
            a_pts.append(place(top if which == 0 else mid))
            b_pts.append(place(mid if which == 0 else end))
            radii.append(s[:, 0] * g * length_radius[1])
    a, b, r = np.stack(a_pts, 1), np.stack(b_pts, 1), np.stack(radii, 1)
    centres = np.concatenate([e_centre, (a + b) / 2], 1)
    assert centres.shape == (n, NUM_CLASSES - 1, 3)
    return (e_centre, e_radii, e_rot), (a, b, r), centres


def generate(seed: int, num_images: int, size: int = 64, focal: float | None = None) -> dict[str, np.ndarray]:
    """``num_images`` random bodies rendered at ``size`` x ``size``; a pure function of the arguments.

    Returns a dict of numpy arrays: ``depth`` (N, H, W) float32 metres, :data:`BACKGROUND_DEPTH` off the
    body; ``label`` (N, H, W) uint8 indices into :data:`PART_NAMES` (0 = background); ``centres``
    (N, 10, 3) float32 camera-frame 3-D centres of the parts 1..10 (the midpoint of each limb's bone,
    the centre of head and torso); ``focal`` (scalar, pixels; default 1.4 * size).
    """
    focal = 1.4 * size if focal is None else float(focal)
    rng = np.random.default_rng(seed)
    ellipsoids, capsules, centres = _bodies(_poses(rng, num_images))
    depth, index = render(camera_rays(size, focal), ellipsoids, capsules)
    return {
        "depth": depth.reshape(num_images, size, size).astype(np.float32),
        "label": (index + 1).reshape(num_images, size, size).astype(np.uint8),
        "centres": centres.astype(np.float32),
        "focal": np.float32(focal),
    }


def back_project(depth: np.ndarray, focal: float) -> np.ndarray:
    """Camera-frame 3-D points (..., H, W, 3) of depth images (..., H, W), the inverse of :func:`camera_rays`."""
    h, w = depth.shape[-2:]
    v, u = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    x = (u - (w - 1) / 2) / focal * depth
    y = -(v - (h - 1) / 2) / focal * depth
    return np.stack([x, y, depth], -1)

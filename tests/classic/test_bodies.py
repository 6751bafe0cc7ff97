"""The synthetic depth bodies: analytic depths of single primitives, labels, background, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from mlcv.data.sources import bodies

SIZE, FOCAL = 33, 40.0  # odd size: the centre pixel's ray is the optical axis
C = (SIZE - 1) // 2


def _no_capsules(n=1):
    return np.zeros((n, 0, 3)), np.zeros((n, 0, 3)), np.zeros((n, 0))


def _no_ellipsoids(n=1):
    return np.zeros((n, 0, 3)), np.zeros((n, 0, 3)), np.zeros((n, 0, 3, 3))


def _render(ellipsoids, capsules):
    depth, index = bodies.render(bodies.camera_rays(SIZE, FOCAL), ellipsoids, capsules)
    return depth.reshape(SIZE, SIZE), index.reshape(SIZE, SIZE)


def test_sphere_depth_at_its_centre_and_off_axis():
    # A sphere of radius 0.5 centred 3 m down the optical axis: its nearest point is 2.5 m away.
    depth, index = _render((np.array([[[0, 0, 3.0]]]), np.full((1, 1, 3), 0.5), np.eye(3)[None, None]), _no_capsules())
    assert depth[C, C] == pytest.approx(2.5, abs=1e-9)
    # Off axis, along the ray (a, 0, 1): (a z)^2 + (z - 3)^2 = 0.25, nearer root, solved here by numpy.
    a = 5 / FOCAL
    z = min(np.roots([a * a + 1, -6, 9 - 0.25]).real)
    assert depth[C, C + 5] == pytest.approx(z, abs=1e-9)
    # Rays that miss hold the background depth and index -1.
    assert depth[0, 0] == bodies.BACKGROUND_DEPTH and index[0, 0] == -1 and index[C, C] == 0


def test_rotated_ellipsoid_depth():
    # Semi-axes 0.3 (x), 0.6 (y), 0.2 (z) at 3 m: 2.8 m on axis; turned 90 degrees about y, the x axis faces us.
    centre, radii = np.array([[[0, 0, 3.0]]]), np.array([[[0.3, 0.6, 0.2]]])
    depth, _ = _render((centre, radii, np.eye(3)[None, None]), _no_capsules())
    assert depth[C, C] == pytest.approx(2.8, abs=1e-9)
    turned = bodies._yaw_matrix(np.array([90.0]))[:, None]
    depth, _ = _render((centre, radii, turned), _no_capsules())
    assert depth[C, C] == pytest.approx(2.7, abs=1e-9)


def test_capsule_depth_along_its_side_and_at_its_cap():
    """Expected values by hand: the pinhole rays (k / f, 0, 1), the side at z = 2.8, the cap's depth from the
    ray-sphere quadratic solved by numpy, and the hit point 0.2 from the cap's centre."""
    # A capsule along x from -0.5 to 0.5 at 3 m, radius 0.2: its side is at z = 2.8 for every |x| <= 0.5.
    caps = (np.array([[[-0.5, 0, 3.0]]]), np.array([[[0.5, 0, 3.0]]]), np.array([[0.2]]))
    depth, index = _render(_no_ellipsoids(), caps)
    rays = bodies.camera_rays(SIZE, FOCAL).reshape(SIZE, SIZE, 3)
    points = bodies.back_project(depth, FOCAL)
    for k in range(0, 8):
        # The pinhole ray of pixel (C, C + k) is (k / f, 0, 1) normalised; at z = 2.8 it is at x = 2.8 k / f <= 0.49,
        # inside the side's -0.5 <= x <= 0.5.
        np.testing.assert_allclose(rays[C, C + k], np.array([k / FOCAL, 0, 1]) / np.hypot(k / FOCAL, 1), atol=1e-12)
        assert depth[C, C + k] == pytest.approx(2.8, abs=1e-9)
        np.testing.assert_allclose(points[C, C + k], [2.8 * k / FOCAL, 0, 2.8], atol=1e-9)
    # Beyond the end (pixel 8: x = 2.8 * 8 / 40 = 0.56 > 0.5 at z = 2.8) the ray meets the cap sphere about (0.5, 0, 3).
    k = 8
    a = k / FOCAL
    np.testing.assert_allclose(rays[C, C + k], np.array([a, 0, 1]) / np.hypot(a, 1), atol=1e-12)
    roots = np.roots([a * a + 1, -(a + 6), 0.25 + 9 - 0.04])  # (a z - 0.5)^2 + (z - 3)^2 = 0.2^2
    assert np.isreal(roots).all()
    z = min(roots.real)
    assert depth[C, C + k] == pytest.approx(z, abs=1e-9)
    # The hit point lies on that sphere: 0.2 from (0.5, 0, 3), beyond the side's end x = 0.5.
    assert np.linalg.norm(points[C, C + k] - [0.5, 0, 3.0]) == pytest.approx(0.2, abs=1e-9)
    assert points[C, C + k, 0] > 0.5
    assert (index[depth < bodies.BACKGROUND_DEPTH] == 0).all()


def test_nearest_primitive_wins():
    sphere = (np.array([[[0, 0, 2.0]]]), np.full((1, 1, 3), 0.1), np.eye(3)[None, None])
    caps = (np.array([[[-0.5, 0, 3.0]]]), np.array([[[0.5, 0, 3.0]]]), np.array([[0.2]]))
    depth, index = _render(sphere, caps)
    assert index[C, C] == 0 and depth[C, C] == pytest.approx(1.9)
    assert index[C, C + 6] == 1 and depth[C, C + 6] == pytest.approx(2.8)


def test_back_projection_inverts_the_camera():
    depth, _ = _render((np.array([[[0, 0, 3.0]]]), np.full((1, 1, 3), 0.5), np.eye(3)[None, None]), _no_capsules())
    xyz = bodies.back_project(depth, FOCAL)
    assert xyz[C, C] == pytest.approx([0, 0, 2.5])
    # Every body point lies on the sphere.
    on = depth < bodies.BACKGROUND_DEPTH
    r = np.linalg.norm(xyz[on] - [0, 0, 3.0], axis=-1)
    assert r == pytest.approx(np.full(r.shape, 0.5), abs=1e-9)


def test_generate_is_a_pure_function_of_the_seed():
    a, b, c = bodies.generate(7, 3, 32), bodies.generate(7, 3, 32), bodies.generate(8, 3, 32)
    for key in ("depth", "label", "centres"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["depth"], c["depth"])


def test_background_depth_is_constant_and_every_part_appears():
    d = bodies.generate(0, 20)
    assert d["depth"].shape == d["label"].shape == (20, 64, 64)
    assert d["depth"].dtype == np.float32 and d["label"].dtype == np.uint8
    bg = d["label"] == 0
    assert (d["depth"][bg] == bodies.BACKGROUND_DEPTH).all()
    assert 1.5 < d["depth"][~bg].min() and d["depth"][~bg].max() < 5.0
    assert set(np.unique(d["label"])) == set(range(bodies.NUM_CLASSES))
    assert d["centres"].shape == (20, 10, 3)


def _mean_column(labels: np.ndarray, k: int) -> np.ndarray:
    """Mean column of the pixels labelled k in each image (NaN where there are none)."""
    mask = labels == k
    with np.errstate(invalid="ignore"):
        return (mask * np.arange(labels.shape[-1])).sum((1, 2)) / mask.sum((1, 2))


def test_left_and_right_parts_are_distinct_labels_on_the_expected_sides():
    # The body faces the camera (turned at most 30 degrees), so its left is on the image's right.
    d = bodies.generate(1, 30)
    names = bodies.PART_NAMES
    for part in ("upper_arm", "lower_arm", "upper_leg", "lower_leg"):
        left, right = names.index(f"left_{part}"), names.index(f"right_{part}")
        assert left != right
        lc, rc = _mean_column(d["label"], left), _mean_column(d["label"], right)
        both = np.isfinite(lc) & np.isfinite(rc)
        assert both.sum() >= 20
        assert (lc > rc)[both].mean() >= 0.9, part

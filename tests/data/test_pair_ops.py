"""Preprocessing of stereo and frame pairs (``stereo_planes`` / ``flow_layers`` keys) and the checks of bad input.

Synthetic pairs built here: a stereo pair whose right view is the left shifted by a constant disparity ``D``, and
a frame pair whose second frame is the first translated by a constant flow ``(TX, TY)``. After each op the pair
must still satisfy its ground truth, checked by sampling the other view (NumPy bilinear) at the matched position.
"""

import numpy as np
import pytest

from mlcv.config import ConfigError
from mlcv.data import ops, pipeline
from mlcv.data.ops import checks, spatial

H, W, D = 16, 40, 3
TX, TY = 3.0, -2.0
GEOMETRIC = [
    "flip_lr(p=1.0)",
    "flip_ud(p=1.0)",
    "random_crop((10, 24), pad=2)",
    "center_crop((12, 30))",
    "resize((32, 80))",
    "resize((11, 27))",
    "resize_short(8)",
    "pad_to((20, 48))",
    "random_resized_crop((12, 20), scale=(0.3, 1.0))",
    "random_scale(0.6, 1.6)",
    "rotate(30)",
]


def _texture(rng, height, width, kind):
    """``kind="noise"``: uniform noise; ``"linear"``: ``2 x + 5 y`` (bilinear resampling reproduces it exactly)."""
    if kind == "noise":
        return rng.random((height, width, 1)).astype(np.float32) * 255
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    return (2 * xx + 5 * yy)[..., None]


def _stereo(rng, kind="noise", height=H, width=W):
    """Left pixel x shows texture column x, right pixel x column x + D: left(x) = right(x - D), as stereo_planes."""
    tex = _texture(rng, height, width + D, kind)
    x = np.arange(width)
    valid_l, valid_r = np.broadcast_to(x - D >= 0, (height, width)), np.broadcast_to(x + D < width, (height, width))
    return {
        "image": tex[:, :width],
        "image_right": tex[:, D : width + D],
        "disparity": np.full((height, width), D, np.float32),
        "disparity_right": np.full((height, width), D, np.float32),
        "disparity_mask": valid_l.copy(),
        "disparity_right_mask": valid_r.copy(),
        "occlusion": ~valid_l,
        "occlusion_right": ~valid_r,
        "focal_px": np.float64(100.0),
        "baseline": np.float64(0.1),
        "id": "pair",
    }


def _frames(rng, kind="noise", height=H, width=W):
    """Frame 2 is frame 1 moved by (TX, TY): frame2(p + flow) = frame1(p), flow_mask where p + flow is inside."""
    pad = 4
    tex = _texture(rng, height + 2 * pad, width + 2 * pad, kind)
    yy, xx = np.mgrid[:height, :width]
    return {
        "image": tex[pad : pad + height, pad : pad + width],
        "image_next": tex[pad - int(TY) : pad - int(TY) + height, pad - int(TX) : pad - int(TX) + width],
        "flow": np.broadcast_to(np.float32([TX, TY]), (height, width, 2)).copy(),
        "flow_mask": (xx + TX >= 0) & (xx + TX <= width - 1) & (yy + TY >= 0) & (yy + TY <= height - 1),
        "id": "frames",
    }


def _bilinear(img, x, y):
    """``img`` ``[H, W, C]`` at continuous pixel-index positions ``(x, y)``, both inside ``[0, W-1] x [0, H-1]``."""
    x0 = np.clip(np.floor(x).astype(int), 0, img.shape[1] - 2)
    y0 = np.clip(np.floor(y).astype(int), 0, img.shape[0] - 2)
    tx, ty = (x - x0)[:, None], (y - y0)[:, None]
    top = img[y0, x0] * (1 - tx) + img[y0, x0 + 1] * tx
    bottom = img[y0 + 1, x0] * (1 - tx) + img[y0 + 1, x0 + 1] * tx
    return top * (1 - ty) + bottom * ty


def _match_error(target, source, dx, dy, valid, margin=0):
    """max |target(p) - source(p + (dx, dy))| over valid pixels whose match lies ``margin`` inside the source."""
    h, w = target.shape[:2]
    ys, xs = np.nonzero(valid)
    mx, my = xs + dx[ys, xs], ys + dy[ys, xs]
    keep = (mx >= margin) & (mx <= w - 1 - margin) & (my >= margin) & (my <= h - 1 - margin)
    keep &= (xs >= margin) & (xs <= w - 1 - margin) & (ys >= margin) & (ys <= h - 1 - margin)
    ys, xs, mx, my = ys[keep], xs[keep], mx[keep], my[keep]
    assert len(ys) > 20, f"only {len(ys)} pixels checked"
    return np.abs(target[ys, xs] - _bilinear(source, mx, my)).max()


def _stereo_error(out, margin=0):
    """The worse of left(x) vs right(x - d) and right(x) vs left(x + d_right)."""
    zero = np.zeros_like(out["disparity"])
    left = _match_error(out["image"], out["image_right"], -out["disparity"], zero, out["disparity_mask"], margin)
    right = _match_error(
        out["image_right"], out["image"], out["disparity_right"], zero, out["disparity_right_mask"], margin
    )
    return max(left, right)


def _flow_error(out, margin=0):
    flow = out["flow"]
    return _match_error(out["image"], out["image_next"], flow[..., 0], flow[..., 1], out["flow_mask"], margin)


def test_generators_satisfy_their_ground_truth():
    """The built pairs match exactly, and a wrong disparity or a flow with dx negated does not."""
    ex = _stereo(np.random.default_rng(0))
    assert _stereo_error(ex) == 0
    assert _stereo_error({**ex, "disparity": ex["disparity"] + 1}) > 10
    fr = _frames(np.random.default_rng(0))
    assert _flow_error(fr) == 0
    assert _flow_error({**fr, "flow": fr["flow"] * np.float32([-1, 1])}) > 10


# --- stereo pairs ---


def test_flip_lr_swaps_views_disparities_masks_and_occlusions():
    """flip_lr of a pair: new left = mirrored right, each left key takes its mirrored right key; the warp holds."""
    ex = _stereo(np.random.default_rng(1))
    out = ops.parse("flip_lr(p=1.0)")(ex, np.random.default_rng(0))
    for left, right in spatial.RIGHT_VIEW.items():
        np.testing.assert_array_equal(out[left], ex[right][:, ::-1])
        np.testing.assert_array_equal(out[right], ex[left][:, ::-1])
    assert _stereo_error(out) == 0
    np.testing.assert_array_equal(out["occlusion"], ~out["disparity_mask"])
    assert out["focal_px"] is ex["focal_px"] and out["baseline"] is ex["baseline"]


def test_flip_lr_needs_both_occlusions():
    """A pair with occlusion but no occlusion_right cannot be flipped: the error names occlusion_right."""
    ex = _stereo(np.random.default_rng(0))
    del ex["occlusion_right"]
    with pytest.raises(ValueError, match="needs 'occlusion_right' along with 'occlusion'"):
        ops.parse("flip_lr(p=0.0)")(ex, np.random.default_rng(0))


@pytest.mark.parametrize("seed", range(4))
def test_random_crop_cuts_both_views_at_one_place(seed):
    """random_crop takes the same window of every key; disparities, occlusions and calibration unchanged."""
    ex = _stereo(np.random.default_rng(seed))
    out = ops.parse("random_crop((10, 24))")(ex, np.random.default_rng(seed))
    ((y, x),) = np.argwhere(ex["image"][..., 0] == out["image"][0, 0, 0])  # noise values are unique
    for key in spatial.DENSE_KEYS:
        if key in ex:
            np.testing.assert_array_equal(out[key], ex[key][y : y + 10, x : x + 24], err_msg=key)
    assert out["focal_px"] is ex["focal_px"]
    assert _stereo_error(out) == 0


def test_resize_scales_disparity_and_focal_px_by_the_width():
    """Resizing 16x40 to 16x80 doubles disparity and focal_px, keeps baseline; the warp holds on a linear texture."""
    ex = _stereo(np.random.default_rng(0), kind="linear")
    out = ops.parse("resize((16, 80))")(ex, None)
    assert set(np.unique(out["disparity"])) == set(np.unique(out["disparity_right"])) == {2 * D}
    assert out["focal_px"] == 200.0 and out["baseline"] is ex["baseline"]
    assert out["disparity"].dtype == np.float32 and out["occlusion"].dtype == bool
    # Depth baseline * focal_px / disparity is kept: 0.1 * 200 / 6 = 0.1 * 100 / 3.
    assert out["baseline"] * out["focal_px"] / out["disparity"][0, 0] == pytest.approx(0.1 * 100 / D)
    assert _stereo_error(out, margin=1) < 1e-3


@pytest.mark.parametrize("spec", GEOMETRIC)
def test_geometric_ops_keep_every_key_on_the_image(spec):
    """Every geometric op gives every dense key the image's size, keeps dtypes and 0-d calibration scalars 0-d."""
    for make in (_stereo, _frames):
        ex = make(np.random.default_rng(2))
        if spec.startswith("rotate") and "image_right" in ex:
            continue
        out = ops.parse(spec)(ex, np.random.default_rng(3))
        checks.check_sizes(out)
        for key in ex:
            assert np.asarray(out[key]).dtype == np.asarray(ex[key]).dtype, key
        assert all(np.ndim(out[k]) == 0 for k in ("focal_px", "baseline") if k in out)


@pytest.mark.parametrize("name", ops.names())
def test_pair_keys_outside_moves_pass_through(name):
    """Keys an op does not declare come out as the same objects on stereo_planes and flow_layers examples."""
    specs = {s.split("(")[0]: s for s in GEOMETRIC} | {
        "keep": "keep('image', 'id')",
        "scale": "scale(0.5)",
        "cutout": "cutout(4, p=1.0)",
        "pad_boxes": "pad_boxes(3)",
        "selective_search": "selective_search(5)",
        "color_jitter": "color_jitter(0.5, 0.5, 0.5)",
    }
    op = ops.parse(specs.get(name, name))
    for make in (_stereo, _frames):
        ex = make(np.random.default_rng(1))
        if name == "rotate" and "image_right" in ex:
            continue
        if name == "selective_search":
            ex = {**ex, "image": ex["image"].astype(np.uint8)}
        if name == "polar":
            ex = {**ex, "image": np.array([3.0, 4.0], np.float32)}  # its input: a point of the plane
        out = op(ex, np.random.default_rng(2))
        for key in set(out) - set(ops.moves(name)):
            assert out[key] is ex[key], f"{name} rewrote {key!r}, which it does not declare"


def test_rotate_refuses_occlusion():
    """rotate refuses a stereo key even without the right view, naming it."""
    ex = {"image": np.zeros((8, 8, 1)), "occlusion": np.zeros((8, 8), bool)}
    with pytest.raises(ValueError, match="epipolar.*occlusion"):
        ops.parse("rotate(10)")(ex, np.random.default_rng(0))


# --- frame pairs ---


def test_flow_flips_mirror_both_frames_and_negate_one_component():
    """flip_lr mirrors both frames (no swap) and negates dx; flip_ud negates dy; frame2(p + flow) = frame1(p)."""
    ex = _frames(np.random.default_rng(4))
    lr = ops.parse("flip_lr(p=1.0)")(ex, np.random.default_rng(0))
    np.testing.assert_array_equal(lr["image_next"], ex["image_next"][:, ::-1])
    np.testing.assert_array_equal(lr["flow"][0, 0], [-TX, TY])
    assert _flow_error(lr) == 0
    ud = ops.parse("flip_ud(p=1.0)")(ex, np.random.default_rng(0))
    np.testing.assert_array_equal(ud["flow"][0, 0], [TX, -TY])
    assert _flow_error(ud) == 0


def test_flow_crop_keeps_vectors_and_resize_scales_them():
    """A crop leaves the vectors; resizing 16x40 to 32x20 doubles dy and halves dx; both still match."""
    ex = _frames(np.random.default_rng(5), kind="linear")
    out = ops.parse("random_crop((12, 30))")(ex, np.random.default_rng(0))
    np.testing.assert_array_equal(out["flow"][0, 0], [TX, TY])
    assert _flow_error(out) == 0
    out = ops.parse("resize((32, 20))")(ex, None)
    np.testing.assert_array_equal(np.unique(out["flow"].reshape(-1, 2), axis=0), [[TX / 2, TY * 2]])
    assert out["flow"].dtype == np.float32
    assert _flow_error(out, margin=1) < 1e-3


@pytest.mark.parametrize("degrees", [90.0, -90.0, 30.0])
def test_flow_rotates_with_the_frames(degrees):
    """rotate turns the flow vectors with both frames: frame2(p + flow) = frame1(p) after the rotation."""
    ex = _frames(np.random.default_rng(6), kind="noise" if abs(degrees) == 90 else "linear", height=24, width=24)
    out = spatial.rotate(ex, degrees)
    t = np.deg2rad(degrees)  # counter-clockwise as displayed, y pointing down: (dx, dy) -> (c dx + s dy, c dy - s dx)
    expected = [np.cos(t) * TX + np.sin(t) * TY, np.cos(t) * TY - np.sin(t) * TX]
    valid = out["flow_mask"]
    np.testing.assert_allclose(out["flow"][valid], np.broadcast_to(expected, (valid.sum(), 2)), atol=1e-5)
    # Off 90 degrees the corners rotate in from outside (0): check pixels whose match stays in the central disc.
    yy, xx = np.mgrid[:24, :24] + 0.5
    r, r_match = np.hypot(xx - 12, yy - 12), np.hypot(xx + expected[0] - 12, yy + expected[1] - 12)
    out["flow_mask"] = valid & (r < 8) & (r_match < 8)
    assert _flow_error(out) < 1e-3


# --- photometric ---


def test_color_jitter_draws_each_view_on_its_own():
    """Identical views come out different (own draws); same_for_views=True keeps them equal; image draws first."""
    img = np.random.default_rng(0).random((6, 8, 3)).astype(np.float32)
    for other in ("image_right", "image_next"):
        op = ops.parse("color_jitter(0.5, 0.5, 0.5)")
        out = op({"image": img, other: img.copy()}, np.random.default_rng(3))
        assert not np.allclose(out["image"], out[other])
        alone = op({"image": img}, np.random.default_rng(3))
        np.testing.assert_array_equal(out["image"], alone["image"])
        same = ops.parse("color_jitter(0.5, 0.5, 0.5, same_for_views=True)")
        out = same({"image": img, other: img.copy()}, np.random.default_rng(3))
        np.testing.assert_array_equal(out["image"], out[other])


def test_normalize_applies_to_every_view():
    """normalize maps image_next like image."""
    ex = _frames(np.random.default_rng(0))
    out = ops.parse("normalize(10.0, 2.0)")(ex, None)
    np.testing.assert_allclose(out["image_next"], (ex["image_next"] - 10) / 2)


# --- bad input ---


@pytest.mark.parametrize("key", ["image_right", "image_next", "disparity", "flow"])
def test_views_of_different_sizes_raise_naming_the_key(key):
    """A view or annotation narrower than the image fails every geometric op, and the pipeline names the dataset."""
    ex = {**_stereo(np.random.default_rng(0)), **_frames(np.random.default_rng(0))}
    ex[key] = ex[key][:, :-2]
    for spec in ("random_crop(8)", "flip_lr(p=1.0)", "resize(8)"):
        with pytest.raises(ValueError, match=f"{key} is \\({H}, {W - 2}\\).*image is \\({H}, {W}\\)"):
            ops.parse(spec)(ex, np.random.default_rng(0))
    # A photometric-only op string is caught after preprocessing.
    with pytest.raises(ConfigError, match=f"dataset 'stereo_planes'.*'normalize'.*{key} is"):
        pipeline.preprocess(ops.parse("normalize"), ex, np.random.default_rng(0), "normalize", ("stereo_planes", {}))


@pytest.mark.parametrize("key, value", [("disparity", np.nan), ("disparity_right", np.inf), ("flow", -np.inf)])
def test_non_finite_ground_truth_raises_where_valid(key, value):
    """NaN / inf where the mask says valid raises ConfigError naming dataset and key; where invalid it passes."""
    ex = {**_stereo(np.random.default_rng(0)), **_frames(np.random.default_rng(0))}
    mask = checks.GROUND_TRUTH_MASKS[key]
    bad = ex[key].copy()
    ys, xs = np.nonzero(ex[mask])
    bad[ys[0], xs[0]] = value
    op = ops.parse("center_crop((16, 40))")
    with pytest.raises(ConfigError, match=f"dataset 'planes'.*{key} holds 1 non-finite value.*where {mask}"):
        pipeline.preprocess(op, {**ex, key: bad}, np.random.default_rng(0), "center_crop", ("planes", {}))
    ys, xs = np.nonzero(~ex[mask])
    fine = ex[key].copy()
    fine[ys[0], xs[0]] = value
    pipeline.preprocess(op, {**ex, key: fine}, np.random.default_rng(0), "center_crop", ("planes", {}))
    # Without the mask every pixel counts.
    with pytest.raises(ValueError, match=f"{key} holds 1 non-finite value.*no mask"):
        checks.check_finite({key: fine})


def test_op_errors_name_the_dataset():
    """An op's ValueError reaches the pipeline as a ConfigError naming dataset and op string; without checks as is."""
    ex = _stereo(np.random.default_rng(0))
    op = ops.parse("random_crop(64)")
    with pytest.raises(ConfigError, match="dataset 'stereo_planes'.*'random_crop\\(64\\)'.*smaller than the crop"):
        pipeline.preprocess(op, ex, np.random.default_rng(0), "random_crop(64)", ("stereo_planes", {}))
    with pytest.raises(ValueError, match="smaller than the crop") as info:
        pipeline.preprocess(op, ex, np.random.default_rng(0), "random_crop(64)", None)
    assert not isinstance(info.value, ConfigError)


def test_check_disparity_range():
    """A disparity range reaching the image width raises ConfigError naming the given key; a fitting one passes."""
    checks.check_disparity_range(127, 128, "config.model.max_disparity")
    with pytest.raises(ConfigError, match=r"config\.model\.max_disparity=128 is wider than .*128 px.*at most 127"):
        checks.check_disparity_range(128, 128, "config.model.max_disparity")
    with pytest.raises(ConfigError, match=r"config\.task\.max_disparity=-1"):
        checks.check_disparity_range(-1, 128, "config.task.max_disparity")

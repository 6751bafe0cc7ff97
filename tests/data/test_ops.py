"""Tests of mlcv.data.ops: each preprocessing op on small arrays, and op-string parsing."""

import numpy as np
import pytest
import scipy.ndimage as ndi
from skimage import transform as sk_transform

from mlcv.data import ops
from mlcv.data.ops import image_fns as image

DIGITS_DEFAULTS = {"normalize": {"mean": 4.88, "std": 6.02}}


def _image():
    # 3x4 image with 2 channels: value = 10*row + col (+100 in channel 1).
    base = np.array([[0, 1, 2, 3], [10, 11, 12, 13], [20, 21, 22, 23]], np.uint8)
    return np.stack([base, base + 100], axis=-1)


def _ex():
    return {"image": _image(), "label": 7, "id": "abc"}


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_registered_names():
    """The registry lists exactly the built-in ops, sorted."""
    assert ops.names() == [
        "center_crop",
        "color_jitter",
        "cutout",
        "decode_detection",
        "decode_segmentation",
        "flip_lr",
        "flip_ud",
        "keep",
        "normalize",
        "pad_boxes",
        "pad_to",
        "polar",
        "random_crop",
        "random_resized_crop",
        "random_scale",
        "resize",
        "resize_short",
        "rotate",
        "scale",
        "selective_search",
    ]


def test_normalize_hand_values():
    """normalize(2.0, 4.0) maps pixels 0, 10, 23 to -0.5, 2.0, 5.25 in float32; other keys untouched."""
    out = ops.parse("normalize(2.0, 4.0)")(_ex(), _rng())
    assert out["image"].dtype == np.float32
    assert out["image"][0, 0, 0] == pytest.approx(-0.5)
    assert out["image"][1, 0, 0] == pytest.approx(2.0)
    assert out["image"][2, 3, 0] == pytest.approx(5.25)
    assert out["image"][2, 3, 1] == pytest.approx((123 - 2) / 4)
    assert out["label"] == 7 and out["id"] == "abc"


def test_normalize_per_channel():
    """Tuple mean/std apply per channel: channel 0 (x-0)/1, channel 1 (x-100)/2."""
    out = ops.parse("normalize(mean=(0, 100), std=(1, 2))")(_ex(), _rng())
    expected0 = np.array([[0, 1, 2, 3], [10, 11, 12, 13], [20, 21, 22, 23]], np.float32)
    np.testing.assert_allclose(out["image"][..., 0], expected0)
    np.testing.assert_allclose(out["image"][..., 1], expected0 / 2)


def test_normalize_bare_is_identity_in_float():
    """Bare normalize without defaults is (x - 0) / 1."""
    out = ops.parse("normalize")(_ex(), _rng())
    np.testing.assert_array_equal(out["image"], _image().astype(np.float32))


def test_normalize_uses_defaults():
    """A bare normalize takes mean/std from the defaults: (16 - 4.88) / 6.02 = 1.847176..."""
    ex = {"image": np.full((2, 2, 1), 16, np.uint8)}
    out = ops.parse("normalize", DIGITS_DEFAULTS)(ex, _rng())
    np.testing.assert_allclose(out["image"], np.full((2, 2, 1), 11.12 / 6.02), rtol=1e-6)


def test_normalize_string_kwargs_override_defaults():
    """A keyword in the string overrides that default and keeps the other: (16 - 1) / 6.02."""
    ex = {"image": np.full((1, 1, 1), 16, np.uint8)}
    out = ops.parse("normalize(mean=1.0)", DIGITS_DEFAULTS)(ex, _rng())
    assert out["image"][0, 0, 0] == pytest.approx(15 / 6.02, rel=1e-6)
    out = ops.parse("normalize(mean=0.0, std=2.0)", DIGITS_DEFAULTS)(ex, _rng())
    assert out["image"][0, 0, 0] == pytest.approx(8.0)


def test_normalize_positional_args_override_defaults():
    """Positional arguments in the string also take precedence over the dataset defaults: (16 - 0.5) / 0.25."""
    ex = {"image": np.full((1, 1, 1), 16, np.uint8)}
    out = ops.parse("normalize(0.5, 0.25)", DIGITS_DEFAULTS)(ex, _rng())
    assert out["image"][0, 0, 0] == pytest.approx(62.0)


def test_defaults_of_other_ops_are_ignored():
    """Defaults for normalize do not leak into other ops."""
    out = ops.parse("scale(2.0)", DIGITS_DEFAULTS)({"image": np.full((1, 1, 1), 3, np.uint8)}, _rng())
    assert out["image"][0, 0, 0] == 6.0


def test_scale():
    """scale(0.25) multiplies every pixel by 0.25 and returns float32."""
    out = ops.parse("scale(0.25)")(_ex(), _rng())
    assert out["image"].dtype == np.float32
    assert out["image"][1, 2, 0] == 3.0
    assert out["image"][2, 3, 1] == 30.75


def test_scale_documented_fraction_form():
    """The documented spelling scale(1/255) maps 255 to 1.0."""
    out = ops.parse("scale(1/255)")({"image": np.full((1, 1, 1), 255, np.uint8)}, _rng())
    assert out["image"][0, 0, 0] == pytest.approx(1.0)


def test_flip_lr_p1_always_flips():
    """p=1 mirrors the width axis exactly: row [0 1 2 3] becomes [3 2 1 0], for any rng."""
    op = ops.parse("flip_lr(p=1.0)")
    for seed in range(20):
        out = op(_ex(), _rng(seed))
        np.testing.assert_array_equal(out["image"][0, :, 0], [3, 2, 1, 0])
        np.testing.assert_array_equal(out["image"][2, :, 1], [123, 122, 121, 120])
        assert out["label"] == 7


def test_flip_lr_p0_never_flips():
    """p=0 leaves the image unchanged for any rng."""
    op = ops.parse("flip_lr(0.0)")
    for seed in range(20):
        np.testing.assert_array_equal(op(_ex(), _rng(seed))["image"], _image())


def test_flip_lr_default_flips_sometimes():
    """The default p=0.5 flips some but not all of 200 draws."""
    op = ops.parse("flip_lr")
    rng = _rng(1)
    flipped = sum(op(_ex(), rng)["image"][0, 0, 0] == 3 for _ in range(200))
    assert 60 < flipped < 140


def _windows(padded, h, w):
    return {
        (y, x): padded[y : y + h, x : x + w]
        for y in range(padded.shape[0] - h + 1)
        for x in range(padded.shape[1] - w + 1)
    }


def test_random_crop_with_pad_is_a_window_of_padded_image():
    """Each crop equals some (y, x) window of the zero-padded image, and every offset 0..2*pad occurs."""
    pad = 1
    op = ops.parse(f"random_crop((3, 4), pad={pad})")
    padded = np.pad(_image(), ((pad, pad), (pad, pad), (0, 0)))
    windows = _windows(padded, 3, 4)
    assert len(windows) == 9  # offsets y, x in {0, 1, 2}
    seen = set()
    rng = _rng(0)
    for _ in range(200):
        out = op(_ex(), rng)["image"]
        assert out.shape == (3, 4, 2)
        matches = [k for k, v in windows.items() if np.array_equal(v, out)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == set(windows)


def test_random_crop_square_int_size():
    """An int size crops a square; without pad the crop is a window of the image itself."""
    op = ops.parse("random_crop(2)")
    windows = _windows(_image(), 2, 2)
    rng = _rng(3)
    seen = set()
    for _ in range(100):
        out = op(_ex(), rng)["image"]
        matches = [k for k, v in windows.items() if np.array_equal(v, out)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == {(y, x) for y in range(2) for x in range(3)}


def test_random_crop_full_size_is_identity():
    """Cropping the image's own size without pad returns it unchanged."""
    out = ops.parse("random_crop((3, 4))")(_ex(), _rng())
    np.testing.assert_array_equal(out["image"], _image())


def test_random_crop_larger_than_image_raises():
    """A crop larger than the (padded) image raises ValueError."""
    with pytest.raises(ValueError, match="smaller than the crop"):
        ops.parse("random_crop(4)")(_ex(), _rng())
    with pytest.raises(ValueError, match="smaller than the crop"):
        ops.parse("random_crop(6, pad=1)")(_ex(), _rng())


def test_keep():
    """keep('image', 'label') drops every other key."""
    out = ops.parse("keep('image', 'label')")(_ex(), _rng())
    assert sorted(out) == ["image", "label"]
    np.testing.assert_array_equal(out["image"], _image())
    assert out["label"] == 7


def test_composed_equals_ops_in_order():
    """A '|' spec equals applying its ops one after another with the same rng stream."""
    spec = "flip_lr | random_crop(2, pad=1) | normalize(1.0, 2.0) | keep('image')"
    composed = ops.parse(spec)(_ex(), _rng(5))
    rng = _rng(5)
    ex = _ex()
    for piece in spec.split("|"):
        ex = ops.parse(piece)(ex, rng)
    assert sorted(composed) == ["image"]
    np.testing.assert_array_equal(composed["image"], ex["image"])


def test_composed_hand_example():
    """flip_lr(1), scale(2), keep('image') turn the 1x3 image [0 1 2] into [4 2 0] and drop the label."""
    ex = {"image": np.array([[[0], [1], [2]]], np.uint8), "label": 1}
    out = ops.parse("flip_lr(1.0)|scale(2.0)|keep('image')")(ex, _rng())
    assert sorted(out) == ["image"]
    np.testing.assert_array_equal(out["image"][..., 0], [[4.0, 2.0, 0.0]])


def test_empty_spec_is_identity():
    """An empty spec (or only separators) returns the example unchanged."""
    ex = _ex()
    assert ops.parse("")(ex, _rng()) is ex
    assert ops.parse(" | ")(ex, _rng()) is ex


def test_parse_is_deterministic_given_seed():
    """The same generator seed gives the same random output; 20 different seeds give more than one output."""
    op = ops.parse("flip_lr|random_crop((3, 4), pad=2)")
    a = op(_ex(), _rng(42))["image"]
    b = op(_ex(), _rng(42))["image"]
    np.testing.assert_array_equal(a, b)
    outs = {op(_ex(), _rng(s))["image"].tobytes() for s in range(20)}
    assert len(outs) > 1


def test_unknown_op_lists_valid_names():
    """An unknown op name raises ValueError that names it and lists every valid op."""
    with pytest.raises(ValueError, match="'flip_diagonal'") as info:
        ops.parse("normalize|flip_diagonal")
    for name in ops.names():
        assert name in str(info.value)


@pytest.mark.parametrize("spec", ["random_crop(size)", "scale(x * 2)", "normalize(mean=m)"])
def test_non_literal_args_raise(spec):
    """Arguments that are not Python literals raise ValueError."""
    with pytest.raises(ValueError, match="must be literals"):
        ops.parse(spec)


@pytest.mark.parametrize("spec", ["flip_lr(", "ops.flip_lr", "flip_lr()()"])
def test_malformed_spec_raises(spec):
    """Specs that are not a name or a call of a name raise ValueError."""
    with pytest.raises(ValueError, match="cannot parse"):
        ops.parse(spec)


def test_bad_arguments_raise_value_error():
    """Arguments the op factory does not take raise ValueError, not TypeError."""
    with pytest.raises(ValueError, match="bad arguments"):
        ops.parse("flip_lr(q=1)")
    with pytest.raises(ValueError, match="bad arguments"):
        ops.parse("scale")


def test_register_twice_raises():
    """Registering an existing op name again raises ValueError."""
    with pytest.raises(ValueError, match="registered twice"):
        ops.register("keep")(lambda: None)


# Every registered op, with arguments and the (height, width) it maps an 8x8 image to. A newly registered op without
# an entry here fails test_every_op_maps_8x8_images.
OP_CASES = {
    "center_crop": ("center_crop((4, 6))", (4, 6)),
    "color_jitter": ("color_jitter(0.4, 0.4, 0.4)", (8, 8)),
    "cutout": ("cutout(4, p=1.0)", (8, 8)),
    "decode_detection": ("decode_detection", (8, 8)),  # no TFDS objects: passes through
    "decode_segmentation": ("decode_segmentation(mapping='pet_trimap')", (8, 8)),  # no mask: passes through
    "flip_lr": ("flip_lr", (8, 8)),
    "flip_ud": ("flip_ud", (8, 8)),
    "keep": ("keep('image', 'label')", (8, 8)),
    "normalize": ("normalize(0.5, 2.0)", (8, 8)),
    "pad_boxes": ("pad_boxes(3)", (8, 8)),
    "random_crop": ("random_crop(6, pad=2)", (6, 6)),
    "random_resized_crop": ("random_resized_crop(5)", (5, 5)),
    "random_scale": ("random_scale(0.5, 1.5)", (8, 8)),
    "resize": ("resize((5, 11))", (5, 11)),
    "resize_short": ("resize_short(4)", (4, 4)),
    "pad_to": ("pad_to((9, 10))", (9, 10)),
    "polar": ("polar", (8, 8)),  # maps (x, y) points, not images: raises on these (see POINTS_ONLY)
    "rotate": ("rotate(30)", (8, 8)),
    "scale": ("scale(1/255)", (8, 8)),
    "selective_search": ("selective_search(5)", (8, 8)),
}
FLOAT_OUTPUT = {"normalize", "scale"}
UINT8_ONLY = {"selective_search"}  # reads pixel values, so raises on other images (tested in test_proposals)
POINTS_ONLY = {"polar"}  # maps a last axis of 2 (x, y), so raises on 1- and 3-channel images (tested in test_circles)


@pytest.mark.parametrize("dtype, channels", [(np.float32, 1), (np.uint8, 3)])
@pytest.mark.parametrize("name", ops.names())
def test_every_op_maps_8x8_images(name, dtype, channels):
    """Each registered op maps a read-only 8x8 image to the expected shape and dtype, and leaves its input alone."""
    if name not in OP_CASES:
        pytest.fail(f"op {name!r} has no entry in OP_CASES; add one")
    spec, (h, w) = OP_CASES[name]
    img = (np.arange(64 * channels).reshape(8, 8, channels) * 3 % 256).astype(dtype)
    img.flags.writeable = False  # records may come from a read-only buffer
    before = img.copy()
    op = ops.parse(spec)
    if (name in UINT8_ONLY and dtype != np.uint8) or name in POINTS_ONLY:
        with pytest.raises(ValueError, match=name):
            op({"image": img}, _rng(0))
        return
    for seed in range(5):
        out = op({"image": img, "label": 3}, _rng(seed))
        assert out["image"].shape == (h, w, channels)
        assert out["image"].dtype == (np.float32 if name in FLOAT_OUTPUT else dtype)
        assert out["label"] == 3
    np.testing.assert_array_equal(img, before)


@pytest.mark.parametrize(
    "spec",
    [
        "flip_ud",
        "cutout(3)",
        "rotate(20, p=0.7)",
        "random_resized_crop(4)",
        "random_scale(0.7, 1.4)",
        "color_jitter(0.5, 0.5, 0.5, clip=(0, 1))",
    ],
)
def test_random_ops_deterministic_given_seed(spec):
    """The same seed gives the same output; 20 seeds give more than one output."""
    img = _rng(9).random((6, 6, 3)).astype(np.float32)
    op = ops.parse(spec)
    np.testing.assert_array_equal(op({"image": img}, _rng(4))["image"], op({"image": img}, _rng(4))["image"])
    assert len({op({"image": img}, _rng(s))["image"].tobytes() for s in range(20)}) > 1


def test_flip_ud():
    """p=1 reverses the rows of the 3x4 image; p=0 never does."""
    for seed in range(10):
        out = ops.parse("flip_ud(1.0)")(_ex(), _rng(seed))
        np.testing.assert_array_equal(out["image"][:, 0, 0], [20, 10, 0])
        np.testing.assert_array_equal(out["image"][0, :, 1], [120, 121, 122, 123])
        np.testing.assert_array_equal(ops.parse("flip_ud(p=0.0)")(_ex(), _rng(seed))["image"], _image())


# --- cutout ---


def _square(h, w, cy, cx, size):
    """Pixels at Chebyshev distance <= size // 2 from (cy, cx): the odd-size square, clipped to the image."""
    y, x = np.mgrid[:h, :w]
    return (np.abs(y - cy) <= size // 2) & (np.abs(x - cx) <= size // 2)


def test_cutout_zeroes_exactly_one_clipped_square():
    """On ones, cutout(3, p=1) zeroes exactly the clipped 3x3 square of one centre; centres cover every pixel."""
    op = ops.parse("cutout(3, p=1.0)")
    ones = np.ones((5, 6, 1), np.float32)
    centres, covered, sizes = set(), np.zeros((5, 6), bool), set()
    for seed in range(300):
        zero = op({"image": ones}, _rng(seed))["image"][..., 0] == 0
        matches = [(cy, cx) for cy in range(5) for cx in range(6) if np.array_equal(zero, _square(5, 6, cy, cx, 3))]
        assert len(matches) == 1
        centres.add(matches[0])
        covered |= zero
        sizes.add(int(zero.sum()))
    assert len(centres) == 5 * 6  # the centre ranges over the whole image
    assert covered.all()
    assert sizes == {4, 6, 9}  # corner, edge, interior


def test_cutout_corner_and_even_size_by_hand():
    """Corner centres clip the square to 2x2 / 2x3; an even size spans size//2 above and size//2 - 1 below."""
    ones = np.ones((5, 5, 1), np.uint8)
    out = image.cutout_image(ones, 0, 0, 3)
    expected = np.ones((5, 5), np.uint8)
    expected[:2, :2] = 0
    np.testing.assert_array_equal(out[..., 0], expected)
    assert out.dtype == np.uint8
    expected = np.ones((5, 5), np.uint8)
    expected[3:, 1:4] = 0
    np.testing.assert_array_equal(image.cutout_image(ones, 4, 2, 3)[..., 0], expected)
    expected = np.ones((5, 5), np.uint8)
    expected[0:4, 1:5] = 0  # rows 2-2..2+1, cols 3-2..3+1
    np.testing.assert_array_equal(image.cutout_image(ones, 2, 3, 4)[..., 0], expected)
    np.testing.assert_array_equal(ones, 1)  # input untouched


def test_cutout_fill_and_channels():
    """fill sets every channel inside the square; pixels outside keep their values."""
    img = _image()
    out = image.cutout_image(img, 1, 1, 1, fill=7)
    expected = img.copy()
    expected[1, 1] = 7
    np.testing.assert_array_equal(out, expected)


def test_cutout_probability():
    """p=0 never changes the image; the default p=0.5 changes some but not all of 200 draws."""
    ones = np.ones((6, 6, 1), np.float32)
    for seed in range(50):
        assert ops.parse("cutout(3, p=0.0)")({"image": ones}, _rng(seed))["image"].min() == 1
    op, rng = ops.parse("cutout(3)"), _rng(2)
    cut = sum(op({"image": ones}, rng)["image"].min() == 0 for _ in range(200))
    assert 60 < cut < 140


# --- rotate ---


class _EdgeRng:
    """Stands in for a Generator: random() gives 0 (so any p applies) and uniform(lo, hi) gives hi or lo."""

    def __init__(self, high=True):
        self.high = high

    def random(self):
        return 0.0

    def uniform(self, low, high):
        return high if self.high else low


def test_rotate_90_equals_rot90():
    """rotate(90) with an angle draw of +90 / -90 equals np.rot90 with k=1 / k=-1 on a 5x5 image, float and uint8."""
    img = _rng(0).random((5, 5, 2)).astype(np.float32)
    op = ops.parse("rotate(90)")
    np.testing.assert_allclose(op({"image": img}, _EdgeRng(high=True))["image"], np.rot90(img), atol=1e-6)
    np.testing.assert_allclose(op({"image": img}, _EdgeRng(high=False))["image"], np.rot90(img, k=-1), atol=1e-6)
    np.testing.assert_allclose(image.rotate_image(img, 180), np.rot90(img, 2), atol=1e-6)
    u8 = (img * 255).astype(np.uint8)
    out = image.rotate_image(u8, 90)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.rot90(u8))


def test_rotate_45_ones_by_hand():
    """A 3x3 ones image turned 45 degrees: corners sample (1 - sqrt 2, 1), bilinear with zero outside = 2 - sqrt 2."""
    c = 2 - np.sqrt(2)
    expected = np.array([[c, 1, c], [1, 1, 1], [c, 1, c]])
    np.testing.assert_allclose(image.rotate_image(np.ones((3, 3, 1), np.float32), 45)[..., 0], expected, atol=1e-6)


def test_rotate_matches_scipy():
    """Any angle matches scipy.ndimage.rotate (bilinear, zero outside, same size) on a non-square image."""
    img = _rng(1).random((6, 9, 3)).astype(np.float32)
    for angle in (-33.0, 12.5):
        ref = ndi.rotate(img, angle, reshape=False, order=1, mode="grid-constant", cval=0.0)
        np.testing.assert_allclose(image.rotate_image(img, angle), ref, atol=1e-5)


def test_rotate_keeps_shape_and_p0_is_identity():
    """Random angles keep the shape; p=0 returns the image unchanged."""
    img = _rng(2).random((6, 9, 3)).astype(np.float32)
    for seed in range(5):
        assert ops.parse("rotate(45)")({"image": img}, _rng(seed))["image"].shape == (6, 9, 3)
        np.testing.assert_array_equal(ops.parse("rotate(45, p=0.0)")({"image": img}, _rng(seed))["image"], img)


# --- resize, center_crop, random_resized_crop ---


def test_resize_by_hand():
    """[0, 4] upsampled to 4 pixels samples at -0.25, 0.25, 0.75, 1.25 (edge-clamped): [0, 1, 3, 4].

    4x4 downsampled to 2x2 samples at 0.5 and 2.5: the means of the 2x2 blocks.
    """
    out = ops.parse("resize((1, 4))")({"image": np.array([[[0.0], [4.0]]], np.float32)}, _rng())["image"]
    np.testing.assert_allclose(out[..., 0], [[0, 1, 3, 4]])
    img = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
    blocks = img[..., 0].reshape(2, 2, 2, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(image.resize_image(img, 2)[..., 0], blocks)


def test_resize_matches_references():
    """resize equals scipy's half-pixel zoom with edge extension and skimage's resize with the same options."""
    img = _rng(3).random((5, 7, 3))
    ref = ndi.zoom(img, (9 / 5, 4 / 7, 1), order=1, mode="nearest", grid_mode=True)
    np.testing.assert_allclose(image.resize_image(img, (9, 4)), ref, atol=1e-12)
    ref = sk_transform.resize(img, (9, 4, 3), order=1, mode="edge", anti_aliasing=False, preserve_range=True)
    np.testing.assert_allclose(image.resize_image(img, (9, 4)), ref, atol=1e-12)


def test_resize_uint8_rounds():
    """A uint8 [0, 3] resized to 4 pixels is [0, 0.75, 2.25, 3] rounded: [0, 1, 2, 3], still uint8."""
    out = image.resize_image(np.array([[[0], [3]]], np.uint8), (1, 4))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 0], [[0, 1, 2, 3]])


def test_center_crop_by_hand():
    """The 3x4 image's central 2x2 is rows 0-1, cols 1-2; its central 1x2 is row 1, cols 1-2."""
    out = ops.parse("center_crop(2)")(_ex(), _rng())["image"]
    np.testing.assert_array_equal(out[..., 0], [[1, 2], [11, 12]])
    np.testing.assert_array_equal(image.center_crop_image(_image(), (1, 2))[..., 1], [[111, 112]])
    with pytest.raises(ValueError, match="smaller than the crop"):
        ops.parse("center_crop(4)")(_ex(), _rng())


def test_random_resized_crop_full_box_equals_resize():
    """scale=(1, 1), ratio=(1, 1) on a square image crops all of it: the output is skimage's resize of the image."""
    img = _rng(4).random((6, 6, 3)).astype(np.float32)
    ref = sk_transform.resize(img, (4, 4, 3), order=1, mode="edge", anti_aliasing=False, preserve_range=True)
    for seed in range(5):
        out = ops.parse("random_resized_crop(4, scale=(1, 1), ratio=(1, 1))")({"image": img}, _rng(seed))["image"]
        np.testing.assert_allclose(out, ref, atol=1e-6)


def test_random_resized_crop_fallback_by_hand():
    """With an impossible scale, every draw fails and the box is the central crop clamped to the ratio."""
    rng = _rng(0)
    # 6 high, 4 wide: w/h = 2/3 < 3/4, so w = 4, h = round(4 / 0.75) = 5, top = (6 - 5) // 2 = 0.
    assert image.resized_crop_box(6, 4, rng, (4, 4), (3 / 4, 4 / 3)) == (0, 0, 5, 4)
    # 4 high, 6 wide: w/h = 1.5 > 4/3, so h = 4, w = round(4 * 4/3) = 5, left = 0.
    assert image.resized_crop_box(4, 6, rng, (4, 4), (3 / 4, 4 / 3)) == (0, 0, 4, 5)
    # Ratio (1, 1) on 6x4: a centred 4x4.
    assert image.resized_crop_box(6, 4, rng, (4, 4), (1, 1)) == (1, 0, 4, 4)
    assert image.resized_crop_box(5, 5, rng, (4, 4), (3 / 4, 4 / 3)) == (0, 0, 5, 5)


def test_random_resized_crop_boxes_obey_scale_and_ratio():
    """On a 100x120 image, boxes lie inside it with area fraction in scale and w/h in ratio (up to rounding)."""
    rng = _rng(5)
    fractions, ratios = [], []
    for _ in range(300):
        y, x, h, w = image.resized_crop_box(100, 120, rng, (0.25, 0.5), (0.5, 2.0))
        assert 0 <= y and y + h <= 100 and 0 <= x and x + w <= 120
        fractions.append(h * w / 12000)
        ratios.append(w / h)
    assert 0.24 < min(fractions) < 0.27 and 0.48 < max(fractions) < 0.51
    assert 0.48 < min(ratios) < 0.6 and 1.7 < max(ratios) < 2.05


def test_random_resized_crop_content_is_a_numpy_slice():
    """Scale and ratio pinned so the box size is known by hand, output size = box size (no interpolation): each
    output is exactly ``img[y : y + h, x : x + w]`` for one offset, found by numpy slicing, and keeps uint8.

    6x12 (area 72), scale 0.25, w/h 2: area 18 = 3 x 6, so a 3 high, 6 wide box; the 12x6 image with w/h 0.5 gives
    6 high, 3 wide. Pixel values are all distinct (np.arange), so at most one window matches.
    """
    for (height, width), ratio, (h, w) in (((6, 12), 2.0, (3, 6)), ((12, 6), 0.5, (6, 3))):
        img = np.arange(height * width * 3, dtype=np.uint8).reshape(height, width, 3)
        op = ops.parse(f"random_resized_crop(({h}, {w}), scale=(0.25, 0.25), ratio=({ratio}, {ratio}))")
        offsets = set()
        for seed in range(20):
            out = op({"image": img}, _rng(seed))["image"]
            assert out.dtype == np.uint8
            match = [
                (y, x)
                for y in range(height - h + 1)
                for x in range(width - w + 1)
                if np.array_equal(out, img[y : y + h, x : x + w])
            ]
            assert len(match) == 1, (height, width, seed)
            offsets.add(match[0])
        # The offset is drawn: 20 draws over 4 x 7 = 28 places land on several.
        assert len(offsets) >= 5, offsets


# --- random_scale ---


def test_random_scale_2_by_hand():
    """Zoom 2 on 3x3: upsampled rows sample at -0.25, 0.25, ..., 2.25; the centre crop keeps samples 1-3."""
    img = np.array([[0, 1, 2], [10, 20, 40], [5, 7, 100]], np.float32)[..., None]
    # Rows of the interpolation matrix for sample positions 0.25, 0.75, 1.25.
    m = np.array([[0.75, 0.25, 0], [0.25, 0.75, 0], [0, 0.75, 0.25]])
    out = ops.parse("random_scale(2.0, 2.0)")({"image": img}, _rng())["image"]
    np.testing.assert_allclose(out[..., 0], m @ img[..., 0] @ m.T, rtol=1e-6)


def test_random_scale_half_pads_with_zeros():
    """Zoom 0.5 on 4x4 gives the 2x2 block means, centred in a zero 4x4."""
    img = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
    expected = np.zeros((4, 4), np.float32)
    expected[1:3, 1:3] = [[2.5, 4.5], [10.5, 12.5]]
    np.testing.assert_allclose(image.zoom_image(img, 0.5)[..., 0], expected)
    np.testing.assert_array_equal(image.zoom_image(img, 1.0), img)


# --- color_jitter ---

# A red and a green pixel: luma 0.299 and 0.587, mean luma 0.443.
_RG = np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], np.float32)


def test_adjust_brightness_is_multiplication():
    """Brightness f is exactly image * f in float32; uint8 rounds and saturates at 255."""
    img = _rng(6).random((4, 4, 3)).astype(np.float32) * 10
    out = image.adjust_brightness(img, 1.37)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, img * np.float32(1.37))
    np.testing.assert_array_equal(image.adjust_brightness(np.array([[[100, 200]]], np.uint8), 1.5), [[[150, 255]]])


def test_adjust_contrast_by_hand():
    """Contrast 0.5 on red/green: 0.5 * pixel + 0.5 * 0.443; on 1 channel the mean is over the image."""
    expected = np.array([[[0.7215, 0.2215, 0.2215], [0.2215, 0.7215, 0.2215]]])
    np.testing.assert_allclose(image.adjust_contrast(_RG, 0.5), expected, rtol=1e-6)
    np.testing.assert_allclose(image.adjust_contrast(np.array([[[0.0], [2.0]]]), 0.5), [[[0.5], [1.5]]])


def test_adjust_saturation_by_hand():
    """Saturation 0.5 on red/green blends each pixel with its own luma; 0 gives the grey image; 1 channel: no-op."""
    expected = np.array([[[0.6495, 0.1495, 0.1495], [0.2935, 0.7935, 0.2935]]])
    np.testing.assert_allclose(image.adjust_saturation(_RG, 0.5), expected, rtol=1e-6)
    np.testing.assert_allclose(image.adjust_saturation(_RG, 0.0), [[[0.299] * 3, [0.587] * 3]], rtol=1e-6)
    grey = np.array([[[0.2], [3.0]]], np.float32)
    np.testing.assert_array_equal(image.adjust_saturation(grey, 0.3), grey)


def test_color_jitter_brightness_only():
    """brightness=0.5 alone multiplies by one factor in [0.5, 1.5], both sides of 1 occur; no clipping by default."""
    img = _rng(7).random((3, 3, 3)).astype(np.float32) + 5.0
    op = ops.parse("color_jitter(brightness=0.5)")
    factors = []
    for seed in range(40):
        out = op({"image": img}, _rng(seed))["image"]
        assert out.dtype == np.float32
        ratio = out / img
        np.testing.assert_allclose(ratio, ratio[0, 0, 0], rtol=1e-5)
        factors.append(ratio[0, 0, 0])
    assert 0.5 <= min(factors) < 0.8 and 1.2 < max(factors) <= 1.5


class _OrderRng:
    """Stands in for a Generator: permutation gives a fixed order, uniform(lo, hi) gives hi."""

    def __init__(self, order):
        self.order = order

    def permutation(self, n):
        return np.array(self.order)

    def uniform(self, low, high):
        return high


def test_color_jitter_order_with_clip_follows_torchvision():
    """With clip=(0, 1), the permutation sets the order (torchvision's randperm); each step is the hand formula.

    Factors are all at the top of their range: brightness 1.5, contrast 1.5, saturation 1.5.
    """
    img = np.array([[[0.8, 0.2, 0.1], [0.1, 0.3, 0.4]]], np.float32)

    def gray(x):
        return 0.299 * x[..., :1] + 0.587 * x[..., 1:2] + 0.114 * x[..., 2:]

    def bright(x):
        return np.clip(1.5 * x, 0, 1)

    def contrast(x):
        return np.clip(1.5 * x - 0.5 * gray(x).mean(), 0, 1)

    def sat(x):
        return np.clip(1.5 * x - 0.5 * gray(x), 0, 1)

    op = ops.parse("color_jitter(0.5, 0.5, 0.5, clip=(0, 1))")
    outs = {}
    for order, fns in [((0, 1, 2), (bright, contrast, sat)), ((2, 1, 0), (sat, contrast, bright))]:
        expected = img
        for fn in fns:
            expected = fn(expected)
        outs[order] = op({"image": img}, _OrderRng(order))["image"]
        np.testing.assert_allclose(outs[order], expected, rtol=1e-6, atol=1e-7)
    assert not np.allclose(outs[(0, 1, 2)], outs[(2, 1, 0)])


def test_color_jitter_uint8_keeps_dtype_and_range():
    """On uint8 images the result is uint8 (rounded, saturated) and clip bounds float outputs."""
    img = np.arange(48, dtype=np.uint8).reshape(4, 4, 3) * 5
    out = ops.parse("color_jitter(0.8, 0.8, 0.8)")({"image": img}, _rng(1))["image"]
    assert out.dtype == np.uint8
    f = _rng(8).random((4, 4, 3)).astype(np.float32)
    for seed in range(10):
        out = ops.parse("color_jitter(0.9, 0.9, 0.9, clip=(0.1, 0.9))")({"image": f}, _rng(seed))["image"]
        assert out.min() >= 0.1 and out.max() <= 0.9


def test_resize_short_keeps_aspect_ratio():
    """A 40x20 image with resize_short(10) becomes 20x10; a 20x40 one 10x20 (the shorter side is 10)."""
    tall, wide = np.zeros((40, 20, 3), np.uint8), np.zeros((20, 40, 3), np.uint8)
    assert image.resize_short_image(tall, 10).shape == (20, 10, 3)
    assert image.resize_short_image(wide, 10).shape == (10, 20, 3)
    np.testing.assert_allclose(image.resize_short_image(np.full((6, 3, 1), 7.0), 2), np.full((4, 2, 1), 7.0))

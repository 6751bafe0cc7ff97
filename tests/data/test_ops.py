"""Tests of mlcv.data.ops: each preprocessing op on small arrays, and op-string parsing."""

import numpy as np
import pytest

from mlcv.data import ops

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
    assert ops.names() == ["flip_lr", "keep", "normalize", "random_crop", "scale"]


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
    with pytest.raises(ValueError, match="'flip_ud'") as info:
        ops.parse("normalize|flip_ud")
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

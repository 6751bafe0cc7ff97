"""The batch ops against the per-record ops they stand for: same generators in, identical batch and generator
states out."""

from __future__ import annotations

import numpy as np
import pytest

from mlcv.data import batch_ops
from mlcv.data import ops as ops_lib

# The digits dataset's own normalize defaults, so the default path of normalize is exercised.
DEFAULTS = {"normalize": {"mean": 4.88, "std": 6.02}}

CIFAR_SPECS = [
    "flip_lr",
    "flip_lr(p=0.3)",
    "flip_ud",
    "random_crop(32, pad=4)",
    "random_crop(24)",
    "random_crop((20, 28), pad=2)",
    "random_crop(30, pad=-1)",
    "center_crop(24)",
    "cutout(8)",
    "cutout(7, p=1.0, fill=128)",
    "cutout(40, p=0.8)",
    "cutout(6, p=1.0, fill=128.7)",
    "normalize",
    "normalize(mean=(125.3, 123.0, 113.9), std=(63.0, 62.1, 66.7))",
    "scale(1/255)",
    "flip_lr|random_crop(32, pad=4)|cutout(8)|normalize",
]
DIGITS_SPECS = [
    "flip_lr",
    "random_crop(8, pad=1)",
    "random_crop((6, 5), pad=1)",
    "cutout(3)",
    "cutout(4, p=1.0, fill=-1.5)",
    "normalize",
    "scale(0.5)",
    "normalize(mean=(1.0, 2.0, 3.0), std=2.0)",
    "flip_lr|random_crop(8, pad=1)|cutout(3)|normalize",
    "random_crop(8, pad=2)|flip_ud|cutout(2, p=0.9)|scale(1/16)",
]


def _cifar(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"image": rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8), "label": np.arange(24)}


def _digits(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"image": rng.uniform(0, 16, (17, 8, 8, 1)), "label": rng.integers(0, 10, 17)}


def _generators(seed: int, n: int) -> list[np.random.Generator]:
    # Philox keyed by seed + index: how grain's sampler makes each record's generator.
    return [np.random.Generator(np.random.Philox(key=seed * 1000 + i)) for i in range(n)]


def _per_record(spec: str, batch: dict[str, np.ndarray], rngs: list[np.random.Generator]) -> dict[str, np.ndarray]:
    op = ops_lib.parse(spec, DEFAULTS)
    examples = [op({k: v[i] for k, v in batch.items()}, rng) for i, rng in enumerate(rngs)]
    return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


def _check_same(spec: str, batch: dict[str, np.ndarray], seed: int) -> None:
    n = len(batch["image"])
    want_rngs, got_rngs = _generators(seed, n), _generators(seed, n)
    want = _per_record(spec, batch, want_rngs)
    got = batch_ops.apply_batch(spec, batch, got_rngs, DEFAULTS)
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key].dtype == want[key].dtype, key
        np.testing.assert_array_equal(got[key], want[key], err_msg=f"{spec}: {key}")
    # The same draws, not just the same pixels: every generator must be left where the per-record op leaves it.
    for i, (a, b) in enumerate(zip(want_rngs, got_rngs, strict=True)):
        np.testing.assert_equal(b.bit_generator.state, a.bit_generator.state, err_msg=f"{spec}: generator {i}")


@pytest.mark.parametrize("spec", CIFAR_SPECS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cifar_batch_equals_per_record(spec: str, seed: int) -> None:
    _check_same(spec, _cifar(seed), seed)


@pytest.mark.parametrize("spec", DIGITS_SPECS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_digits_batch_equals_per_record(spec: str, seed: int) -> None:
    _check_same(spec, _digits(seed), seed)


def test_uint8_digits_chain() -> None:
    # The digits dataset as stored: uint8 values 0..16.
    batch = {"image": np.random.default_rng(5).integers(0, 17, (9, 8, 8, 1), dtype=np.uint8)}
    _check_same("flip_lr|random_crop(8, pad=1)|cutout(3)|normalize", batch, 5)


def test_input_not_modified() -> None:
    batch = _cifar(3)
    before = batch["image"].copy()
    batch_ops.apply_batch("flip_lr|cutout(8, p=1.0)", batch, _generators(3, 24))
    np.testing.assert_array_equal(batch["image"], before)


def test_op_without_batch_version_is_named() -> None:
    with pytest.raises(ValueError, match="'resize' has no batch version"):
        batch_ops.parse("flip_lr|resize(16)")


def test_unknown_op_is_named() -> None:
    with pytest.raises(ValueError, match="unknown preprocessing op 'bogus'"):
        batch_ops.parse("flip_lr|bogus(3)")


def test_bad_arguments_as_per_record() -> None:
    with pytest.raises(ValueError, match="bad arguments"):
        batch_ops.parse("cutout(8, q=1)")


def test_keys_the_op_cannot_move_are_refused() -> None:
    batch = {**_cifar(0), "boxes": np.zeros((24, 1, 4), np.float32)}
    with pytest.raises(ValueError, match=r"flip_lr.*'boxes'"):
        batch_ops.apply_batch("flip_lr", batch, _generators(0, 24))


def test_crop_larger_than_image() -> None:
    with pytest.raises(ValueError, match=r"random_crop\(40\)"):
        batch_ops.apply_batch("random_crop(40)", _cifar(0), _generators(0, 24))


def test_one_generator_per_record() -> None:
    with pytest.raises(ValueError, match="one per record"):
        batch_ops.apply_batch("flip_lr", _cifar(0), _generators(0, 3))


def test_views_are_normalized_too() -> None:
    batch = {**_cifar(4), "image_right": np.random.default_rng(9).integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)}
    _check_same("normalize|scale(0.5)", batch, 4)


@pytest.mark.parametrize("keys", [[0, 1, 7], [2**40 + 3, 2**64 + 5, 2**128 - 1]])
def test_record_generators_as_fresh_philox(keys: list[int]) -> None:
    pool = batch_ops.RecordGenerators()
    pool([9] * 5)[0].random(3)  # a used pool must come back as new
    for got, key in zip(pool(keys), keys, strict=True):
        want = np.random.Generator(np.random.Philox(key=key))
        np.testing.assert_equal(got.bit_generator.state, want.bit_generator.state)
        np.testing.assert_array_equal(got.random(5), want.random(5))
        assert got.integers(0, 1000) == want.integers(0, 1000)


JITTER_SPECS = [
    "color_jitter(0.4, 0.4, 0.4)",
    "color_jitter(0.4, 0.4, 0.4, clip=(0, 255))",
    "color_jitter(0.4, 0.4, 0.4, clip=(0.0, 1.0))",
    "color_jitter(1.5, 0.9, 2.0)",  # factors far from 1: integer images round and clip at both ends
    "color_jitter(brightness=0.3)",  # one adjustment: one group whatever the permutations
    "color_jitter(0.2, 0.5)",
    "color_jitter(contrast=0.5, saturation=0.5, clip=(10, 200))",
    "color_jitter()",
    "color_jitter(0.4, 0.4, 0.4, same_for_views=True)",
    "color_jitter(0.4, 0.4, 0.4, clip=(0, 255), same_for_views=True)",
]


def _views(seed: int, dtype: type) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    views = {k: rng.integers(0, 256, (12, 5, 6, 3), dtype=np.uint8) for k in ("image", "image_right", "image_next")}
    if dtype is np.uint8:
        return {**views, "label": np.arange(12)}
    return {k: (v / 255).astype(dtype) for k, v in views.items()}


@pytest.mark.parametrize("spec", JITTER_SPECS)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("views", [("image",), ("image", "image_right"), ("image", "image_right", "image_next")])
def test_color_jitter_as_per_record(spec: str, dtype: type, views: tuple[str, ...]) -> None:
    batch = {k: v for k, v in _views(7, dtype).items() if not k.startswith("image") or k in views}
    _check_same(spec, batch, 7)


@pytest.mark.parametrize(
    "spec", ["color_jitter(0.4, 0.4, 0.4)", "flip_lr|random_crop(8, pad=1)|color_jitter(0.3, 0.6, clip=(0, 16))"]
)
def test_color_jitter_one_channel(spec: str) -> None:
    # Saturation leaves a grey image alone; contrast pivots on the mean of its single channel.
    _check_same(spec, _digits(8), 8)
    _check_same(spec, {"image": _digits(8)["image"].astype(np.float32)}, 8)


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
@pytest.mark.parametrize("spec", ["color_jitter(0.4, 0.4, 0.4)", "color_jitter(0.3, 0.5, 0.7, clip=(0.0, 1.0))"])
def test_color_jitter_other_float_dtypes(spec: str, dtype: type) -> None:
    # float16 views meet a float32 grey: sums computed in float32 and cast back after each adjustment, per record.
    _check_same(spec, _views(10, dtype), 10)


def test_color_jitter_chain() -> None:
    _check_same("flip_lr|random_crop(32, pad=4)|color_jitter(0.4, 0.4, 0.4)|cutout(8)|normalize", _cifar(9), 9)


def test_color_jitter_refusals_as_per_record() -> None:
    with pytest.raises(ValueError, match=r"strengths must be >= 0, got \[0.1, -0.2, 0.0\]"):
        batch_ops.parse("color_jitter(0.1, -0.2)")
    batch = {"image": np.zeros((3, 4, 4, 4), np.uint8)}
    with pytest.raises(ValueError) as want:
        _per_record("color_jitter(saturation=0.5)", batch, _generators(0, 3))
    with pytest.raises(ValueError) as got:
        batch_ops.apply_batch("color_jitter(saturation=0.5)", batch, _generators(0, 3))
    assert str(got.value) == str(want.value)

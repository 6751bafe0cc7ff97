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

"""The batch flips and crops on every dense key (segmentation, masks, depth, stereo pairs, frame pairs with flow)
against the per-record ops: same generators in, identical keys, dtypes and generator states out."""

from __future__ import annotations

import numpy as np
import pytest

from mlcv.data import batch_ops
from mlcv.data import ops as ops_lib

B, H, W = 6, 9, 8  # H != W, so that a row axis taken for a column axis shows


def _rgb(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, (B, H, W, 3), dtype=np.uint8)


def _plane(rng: np.random.Generator, *tail: int) -> np.ndarray:
    return rng.uniform(-5, 40, (B, H, W, *tail)).astype(np.float32)


def _mask(rng: np.random.Generator) -> np.ndarray:
    return rng.random((B, H, W)) < 0.7


def _segmentation(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    seg = rng.integers(0, 5, (B, H, W), dtype=np.uint8)
    seg[:, 0] = 255  # labelled "ignore" in the data already
    return {
        "image": _rgb(rng),
        "segmentation": seg,
        "masks": rng.integers(0, 2, (B, 3, H, W), dtype=np.uint8),
        "depth": _plane(rng),
        "label": np.arange(B),
    }


def _depth_disparity(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "image": rng.uniform(0, 1, (B, H, W, 1)).astype(np.float32),
        "depth": _plane(rng),
        "disparity": _plane(rng),
        "disparity_mask": _mask(rng),
    }


def _stereo(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "image": _rgb(rng),
        "image_right": _rgb(rng),
        "disparity": _plane(rng),
        "disparity_right": _plane(rng),
        "disparity_mask": _mask(rng),
        "disparity_right_mask": _mask(rng),
        "occlusion": _mask(rng),
        "occlusion_right": _mask(rng),
        "focal_px": rng.uniform(500, 700, B).astype(np.float32),
        "baseline": np.full(B, 0.54, np.float32),
    }


def _frames(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    flow = _plane(rng, 2)
    flow[0, 0, 0, 0] = np.nan  # a NaN dx keeps its bits through the flip's product, as per record
    return {"image": _rgb(rng), "image_next": _rgb(rng), "flow": flow, "flow_mask": _mask(rng)}


BATCHES = {"segmentation": _segmentation, "depth": _depth_disparity, "stereo": _stereo, "frames": _frames}
SPECS = [
    "flip_lr",
    "flip_lr(p=0.8)",
    "flip_ud",
    "random_crop(6, pad=2)",
    "random_crop((5, 7), pad=3, seg_fill=7)",
    "random_crop(5)",
    "random_crop(6, pad=-1)",
    "center_crop(5)",
    "center_crop((4, 7))",
    "flip_lr|random_crop(8, pad=2)|flip_ud|center_crop(6)",
    "flip_lr|random_crop(8, pad=2)|color_jitter(0.4, 0.4, 0.4, clip=(0, 255))|normalize(mean=100.0, std=50.0)",
]


def _generators(seed: int) -> list[np.random.Generator]:
    return [np.random.Generator(np.random.Philox(key=seed * 1000 + i)) for i in range(B)]


def _per_record(spec: str, batch: dict[str, np.ndarray], rngs: list[np.random.Generator]) -> dict[str, np.ndarray]:
    op = ops_lib.parse(spec)
    examples = [op({k: v[i] for k, v in batch.items()}, rng) for i, rng in enumerate(rngs)]
    return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


def _check_same(spec: str, batch: dict[str, np.ndarray], seed: int) -> None:
    want_rngs, got_rngs = _generators(seed), _generators(seed)
    want = _per_record(spec, batch, want_rngs)
    got = batch_ops.apply_batch(spec, batch, got_rngs)
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key].dtype == want[key].dtype, key
        np.testing.assert_array_equal(got[key], want[key], err_msg=f"{spec}: {key}")
        if got[key].dtype.kind == "f":  # bit for bit: a NaN's sign or a -0.0 too
            bits = np.dtype(f"u{got[key].itemsize}")
            np.testing.assert_array_equal(got[key].view(bits), want[key].view(bits), err_msg=f"{spec}: {key}")
    for i, (a, b) in enumerate(zip(want_rngs, got_rngs, strict=True)):
        np.testing.assert_equal(b.bit_generator.state, a.bit_generator.state, err_msg=f"{spec}: generator {i}")


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("name", ["segmentation", "stereo", "frames"])
@pytest.mark.parametrize("seed", [0, 1])
def test_dense_keys_as_per_record(name: str, spec: str, seed: int) -> None:
    _check_same(spec, BATCHES[name](seed), seed)


@pytest.mark.parametrize("spec", [s for s in SPECS if "flip_lr" not in s])
def test_left_disparity_without_right_view(spec: str) -> None:
    # flip_lr refuses it (below); the other ops move it as per record.
    _check_same(spec, _depth_disparity(3), 3)


def test_no_instances() -> None:
    batch = {**_segmentation(4), "masks": np.zeros((B, 0, H, W), bool)}
    _check_same("flip_lr|random_crop(6, pad=2)|flip_ud|center_crop(5)", batch, 4)


def test_every_record_flipped_and_padded() -> None:
    # p=1 flips all; a pad of 4 on a crop of 8 leaves most windows reaching outside, into the fills.
    _check_same("flip_lr(p=1.0)|flip_ud(p=1.0)|random_crop(8, pad=4, seg_fill=9)", _segmentation(5), 5)
    _check_same("flip_lr(p=1.0)|flip_ud(p=1.0)|random_crop(8, pad=4)", _stereo(5), 5)


def test_input_not_modified() -> None:
    batch = _stereo(6)
    before = {k: v.copy() for k, v in batch.items()}
    batch_ops.apply_batch("flip_lr(p=1.0)|flip_ud(p=1.0)", batch, _generators(6))
    for key, value in before.items():
        np.testing.assert_array_equal(batch[key], value, err_msg=key)


def _per_record_error(spec: str, batch: dict[str, np.ndarray]) -> str:
    with pytest.raises(ValueError) as info:
        _per_record(spec, batch, _generators(0))
    return str(info.value)


@pytest.mark.parametrize("spec", ["flip_lr", "flip_ud", "random_crop(6, pad=2)", "center_crop(5)"])
@pytest.mark.parametrize("key", ["boxes", "box_labels", "proposals"])
def test_box_rows_and_proposals_still_refused(spec: str, key: str) -> None:
    batch = {**_segmentation(0), key: np.zeros((B, 2, 4), np.float32)}
    rngs = _generators(0)
    with pytest.raises(ValueError, match=rf"{spec.split('(')[0]}: the batch has \['{key}'\]"):
        batch_ops.apply_batch(spec, batch, rngs)
    for a, b in zip(rngs, _generators(0), strict=True):  # refused before any draw
        np.testing.assert_equal(a.bit_generator.state, b.bit_generator.state)


@pytest.mark.parametrize(
    "batch",
    [
        # A stereo pair lacking a right-view key, a left-only annotation on a pair, disparity without a pair.
        {k: v for k, v in _stereo(0).items() if k != "disparity_right_mask"},
        {**_stereo(0), "segmentation": np.zeros((B, H, W), np.uint8)},
        _depth_disparity(0),
    ],
    ids=["lacks_right_mask", "left_only_segmentation", "no_right_view"],
)
def test_stereo_flip_lr_refused_as_per_record(batch: dict[str, np.ndarray]) -> None:
    message = _per_record_error("flip_lr", batch)
    rngs = _generators(0)
    with pytest.raises(ValueError) as info:
        batch_ops.apply_batch("flip_lr", batch, rngs)
    assert str(info.value) == message
    for a, b in zip(rngs, _generators(0), strict=True):
        np.testing.assert_equal(a.bit_generator.state, b.bit_generator.state)


def test_stereo_right_key_without_left_refused() -> None:
    # Per record the flipped records would hold 'disparity' and the others 'disparity_right': no batch.
    batch = {k: v for k, v in _stereo(0).items() if k != "disparity"}
    with pytest.raises(ValueError, match="'disparity_right' needs 'disparity'"):
        batch_ops.apply_batch("flip_lr", batch, _generators(0))


def test_key_of_another_size_refused() -> None:
    batch = {**_segmentation(0), "depth": np.zeros((B, H, W + 1), np.float32)}
    message = _per_record_error("random_crop(6)", batch)
    with pytest.raises(ValueError) as info:
        batch_ops.apply_batch("random_crop(6)", batch, _generators(0))
    assert str(info.value) == message

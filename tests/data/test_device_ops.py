"""The device ops against the per-record NumPy ops of :mod:`mlcv.data.ops`.

Each application, given drawn parameters, must equal the per-record op driven by a stub generator that returns the
same draws; the draws must have the per-record ops' distributions; the deterministic ops must be bit-identical.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlcv.data import device_ops
from mlcv.data import ops as ops_lib

# The private applications, jitted as the ops run them.
apply_flip = jax.jit(device_ops._apply_flip, static_argnums=(2, 3))
apply_crop = jax.jit(device_ops._apply_crop, static_argnums=(3, 4, 5))
apply_cutout = jax.jit(device_ops._apply_cutout, static_argnums=(4, 5, 6))


class StubGenerator:
    """Stands in for a record's ``np.random.Generator``: ``random()`` and ``integers(low, high)`` return the given
    values in order, and each integer must lie in the range the per-record op asks for."""

    def __init__(self, randoms: Sequence[float] = (), integers: Sequence[int] = ()) -> None:
        self.randoms, self.integers_left = list(randoms), list(integers)

    def random(self) -> float:
        return float(self.randoms.pop(0))

    def integers(self, low: int, high: int) -> int:
        value = int(self.integers_left.pop(0))
        assert low <= value < high, (low, value, high)
        return value


def _image(n: int, channels: int, dtype: str, seed: int = 0, height: int = 6, width: int = 9) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "uint8":
        return rng.integers(0, 256, (n, height, width, channels), dtype=np.uint8)
    return (rng.normal(size=(n, height, width, channels)) * 50).astype(dtype)


def _per_record(spec: str, batch: dict[str, np.ndarray], rngs: list, defaults: dict | None = None) -> dict:
    op = ops_lib.parse(spec, defaults)
    examples = [op({k: v[i] for k, v in batch.items()}, rng) for i, rng in enumerate(rngs)]
    return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


def _assert_same(got: jax.Array, want: np.ndarray) -> None:
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(np.asarray(got), want)


IMAGES = [(c, d) for c in (1, 3) for d in ("uint8", "float32")]


@pytest.mark.parametrize(("channels", "dtype"), IMAGES)
@pytest.mark.parametrize(("name", "axis"), [("flip_lr", 2), ("flip_ud", 1)])
@pytest.mark.parametrize("p", [0.5, 0.7])
def test_flip_as_per_record(channels: int, dtype: str, name: str, axis: int, p: float) -> None:
    img = _image(6, channels, dtype)
    u = np.random.default_rng(1).random(6).astype(np.float32)
    # Both outcomes, and the float32 values either side of p: 0.7 rounds down to float32, so u == float32(0.7) is
    # below p, which a comparison with float32(p) would miss.
    u[:4] = [0.0, 0.999, np.float32(p), np.nextafter(np.float32(p), np.float32(2))]
    got = apply_flip(jnp.asarray(img), jnp.asarray(u), p, axis)
    _assert_same(got, _per_record(f"{name}(p={p})", {"image": img}, [StubGenerator([x]) for x in u])["image"])


def _crop_draws(n: int, span_y: int, span_x: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    ys, xs = rng.integers(0, span_y + 1, n, dtype=np.int32), rng.integers(0, span_x + 1, n, dtype=np.int32)
    ys[:2], xs[:2] = [0, span_y], [span_x, 0]  # the extreme offsets, whatever the draw
    return ys, xs


@pytest.mark.parametrize(("channels", "dtype"), IMAGES)
@pytest.mark.parametrize(("size", "pad"), [(4, 1), ((5, 7), 2), ((3, 9), 0), ((3, 6), -1), ((2, 2), 3)])
def test_random_crop_as_per_record(channels: int, dtype: str, size: int | tuple[int, int], pad: int) -> None:
    img = _image(5, channels, dtype)
    h, w = (size, size) if isinstance(size, int) else size
    ys, xs = _crop_draws(5, 6 + 2 * pad - h, 9 + 2 * pad - w)
    got = apply_crop(jnp.asarray(img), jnp.asarray(ys), jnp.asarray(xs), h, w, pad)
    stubs = [StubGenerator(integers=[y, x]) for y, x in zip(ys, xs, strict=True)]
    _assert_same(got, _per_record(f"random_crop({size}, pad={pad})", {"image": img}, stubs)["image"])


@pytest.mark.parametrize(("channels", "dtype"), IMAGES)
@pytest.mark.parametrize("size", [4, (5, 7), (6, 9), (3, 8)])
def test_center_crop_as_per_record(channels: int, dtype: str, size: int | tuple[int, int]) -> None:
    img = _image(3, channels, dtype)
    got = device_ops.parse(f"center_crop({size})")({"image": jnp.asarray(img)}, jax.random.key(0))["image"]
    _assert_same(got, _per_record(f"center_crop({size})", {"image": img}, [None] * 3)["image"])


@pytest.mark.parametrize(("channels", "dtype"), IMAGES)
@pytest.mark.parametrize(("size", "p", "fill"), [(3, 0.5, 0.0), (4, 0.7, 128.7), (1, 1.0, 7.0), (20, 0.9, 255.0)])
def test_cutout_as_per_record(channels: int, dtype: str, size: int, p: float, fill: float) -> None:
    img = _image(7, channels, dtype)
    rng = np.random.default_rng(3)
    u = rng.random(7).astype(np.float32)
    cy, cx = rng.integers(0, 6, 7, dtype=np.int32), rng.integers(0, 9, 7, dtype=np.int32)
    u[:4] = [0.0, 0.0, 0.999, np.float32(p)]
    cy[:2], cx[:2] = [0, 5], [8, 0]  # squares hanging over the corners
    got = apply_cutout(jnp.asarray(img), *(jnp.asarray(a) for a in (u, cy, cx)), size, p, fill)
    stubs = [StubGenerator([ui], [yi, xi]) for ui, yi, xi in zip(u, cy, cx, strict=True)]
    want = _per_record(f"cutout({size}, p={p}, fill={fill})", {"image": img}, stubs)["image"]
    _assert_same(got, want)
    # The per-record op drew a centre exactly where it cut: the stubs saw the order the device op assumes.
    assert [len(s.integers_left) == 0 for s in stubs] == [not float(ui) >= p for ui in u]


@pytest.mark.parametrize(("channels", "dtype"), [*IMAGES, (3, "float16"), (3, "int32")])
@pytest.mark.parametrize(
    "spec",
    [
        "normalize",
        "normalize(mean=125.3, std=63.0)",
        "normalize(mean=(125.3, 123.0, 113.9), std=(63.0, 62.1, 66.7))",
        "normalize(mean=(0.49, 0.48, 0.45), std=0.2)",
        "scale(1/255)",
    ],
)
def test_photometric_bit_identical(channels: int, dtype: str, spec: str) -> None:
    views = {"image": _image(4, channels, dtype), "image_next": _image(4, channels, dtype, seed=1)}
    batch = {**views, "label": np.arange(4, dtype=np.int32)}
    defaults = {"normalize": {"mean": 4.88, "std": 6.02}}
    got = jax.jit(device_ops.parse(spec, defaults))(batch, jax.random.key(0))
    want = _per_record(spec, batch, [None] * 4, defaults)
    assert sorted(got) == sorted(want)
    for key in want:
        _assert_same(got[key], want[key])


def _within_5_sigma(counts: np.ndarray, prob: float, n: int) -> None:
    expected, sigma = n * prob, np.sqrt(n * prob * (1 - prob))
    assert np.all(np.abs(counts - expected) < 5 * sigma), (counts, expected, sigma)


N = 4000


@pytest.mark.parametrize(("name", "p", "shape"), [("flip_lr", 0.3, (1, 2)), ("flip_ud", 0.8, (2, 1))])
def test_flip_frequency(name: str, p: float, shape: tuple[int, int]) -> None:
    # Two pixels, 0 then 1 along the flipped axis: a record was flipped where its first pixel is 1.
    img = np.broadcast_to(np.arange(2, dtype=np.uint8).reshape(1, *shape, 1), (N, *shape, 1))
    out = np.asarray(jax.jit(device_ops.parse(f"{name}(p={p})"))({"image": img}, jax.random.key(4))["image"])
    _within_5_sigma(np.array([(out.reshape(N, 2)[:, 0] == 1).sum()]), p, N)


def test_crop_offsets_uniform() -> None:
    # Channel 0 holds each pixel's row + 1, channel 1 its column + 1; the padding is 0, so each crop reveals where
    # it was taken. random_crop((2, 3), pad=1) of 3 x 4: y and x in 0..3, and every window overlaps the image.
    rows, cols = np.meshgrid(np.arange(1, 4), np.arange(1, 5), indexing="ij")
    img = np.broadcast_to(np.stack([rows, cols], -1).astype(np.float32), (N, 3, 4, 2))
    pad, offsets = 1, []
    op = jax.jit(device_ops.parse(f"random_crop((2, 3), pad={pad})"))
    out = np.asarray(op({"image": img}, jax.random.key(5))["image"])
    for channel, length in ((0, 2), (1, 3)):
        values = out[..., channel]
        position = np.arange(length).reshape((1, -1, 1) if channel == 0 else (1, 1, -1))
        # Offset into the padded image = source index + pad - position in the crop, the same at every inside pixel.
        offset = np.where(values > 0, values - 1 + pad - position, np.nan).reshape(N, -1)
        lo, hi = np.nanmin(offset, axis=1), np.nanmax(offset, axis=1)
        np.testing.assert_array_equal(lo, hi)
        offsets.append(lo.astype(int))
    ys, xs = offsets
    assert ys.min() >= 0 and ys.max() <= 3 and xs.min() >= 0 and xs.max() <= 3
    counts = np.bincount(ys * 4 + xs, minlength=16)
    _within_5_sigma(counts, 1 / 16, N)


def test_cutout_rate_and_centres_uniform() -> None:
    img = np.ones((N, 5, 7, 1), np.uint8)
    out = np.asarray(jax.jit(device_ops.parse("cutout(1, p=0.6)"))({"image": img}, jax.random.key(6))["image"])
    holes = out[..., 0] == 0
    per_record = holes.reshape(N, -1).sum(axis=1)
    assert set(np.unique(per_record)) <= {0, 1}
    cut = per_record == 1
    _within_5_sigma(np.array([cut.sum()]), 0.6, N)
    _within_5_sigma(holes[cut].reshape(cut.sum(), -1).sum(axis=0), 1 / 35, int(cut.sum()))


SPEC = "flip_lr|random_crop((5, 7), pad=2)|cutout(3)|normalize(mean=100.0, std=50.0)"
SPEC_OP = jax.jit(device_ops.parse(SPEC))  # one compilation per key type for the tests below


def _batch(n: int = 16) -> dict[str, np.ndarray]:
    return {"image": _image(n, 3, "uint8", seed=9), "label": np.arange(n, dtype=np.int32)}


def test_op_i_draws_from_fold_in_i() -> None:
    batch, key = _batch(), jax.random.key(10)
    got = SPEC_OP(batch, key)

    @jax.jit
    def by_hand(img: jax.Array) -> jax.Array:
        # The string's defaults written out: flip_lr's p=0.5, cutout's p=0.5 and fill=0.
        keys = [jax.random.fold_in(key, i) for i in range(3)]
        x = device_ops._apply_flip(img, device_ops._draw_uniform(keys[0], 16), 0.5, 2)
        x = device_ops._apply_crop(x, *device_ops._draw_crop(keys[1], 16, 5, 6), 5, 7, 2)
        return device_ops._apply_cutout(x, *device_ops._draw_cutout(keys[2], 16, 5, 7), 3, 0.5, 0.0)

    x = by_hand(batch["image"])
    want = _per_record("normalize(mean=100.0, std=50.0)", {"image": np.asarray(x)}, [None] * 16)["image"]
    _assert_same(got["image"], want)
    _assert_same(got["label"], batch["label"])


@pytest.mark.parametrize("make_key", [jax.random.key, jax.random.PRNGKey])
def test_same_key_same_batch(make_key) -> None:
    op, batch = SPEC_OP, _batch()
    first = np.asarray(op(batch, make_key(0))["image"])
    np.testing.assert_array_equal(np.asarray(op(batch, make_key(0))["image"]), first)
    assert not np.array_equal(np.asarray(op(batch, make_key(1))["image"]), first)


def test_names() -> None:
    assert device_ops.names() == sorted(
        ["flip_lr", "flip_ud", "random_crop", "center_crop", "cutout", "normalize", "scale"]
    )
    assert set(device_ops.names()) <= set(ops_lib.names())


def test_unknown_op_is_named() -> None:
    with pytest.raises(ValueError, match="unknown preprocessing op 'bogus'"):
        device_ops.parse("flip_lr|bogus(3)")


def test_op_without_device_version_is_named() -> None:
    with pytest.raises(ValueError, match="'rotate' has no device version") as info:
        device_ops.parse("flip_lr|rotate(10)")
    assert ", ".join(device_ops.names()) in str(info.value)


def test_bad_arguments_as_per_record() -> None:
    with pytest.raises(ValueError, match="bad arguments"):
        device_ops.parse("cutout(8, q=1)")


@pytest.mark.parametrize(
    ("spec", "message"),
    [("random_crop(10, pad=1)", r"random_crop\(10\): image \(8, 11, 3\)"), ("center_crop(7)", r"center_crop\(7\)")],
)
@pytest.mark.parametrize("jit", [False, True])
def test_crop_larger_than_image(spec: str, message: str, jit: bool) -> None:
    op = device_ops.parse(spec)
    with pytest.raises(ValueError, match=message):
        (jax.jit(op) if jit else op)(_batch(2), jax.random.key(0))


@pytest.mark.parametrize(
    "extra", [{"boxes": np.zeros((2, 1, 4), np.float32)}, {"segmentation": np.zeros((2, 6, 9), np.uint8)}]
)
def test_keys_the_op_cannot_move_are_refused(extra: dict[str, np.ndarray]) -> None:
    with pytest.raises(ValueError, match=rf"flip_lr.*'{next(iter(extra))}'"):
        jax.jit(device_ops.parse("flip_lr"))({**_batch(2), **extra}, jax.random.key(0))


def test_batch_without_image() -> None:
    with pytest.raises(ValueError, match="no 'image'"):
        device_ops.parse("normalize")({"label": np.arange(2)}, jax.random.key(0))

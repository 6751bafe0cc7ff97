"""Upsampling and FCN-32s/16s/8s: the course's transposed-convolution table, hand sums, OpenCV and flax/lax.

Known answers come from outside the code under test: the course's worked example, sums done by hand in the
test, ``cv2.resize`` for bilinear and nearest upsampling, and ``jax.lax.conv_transpose`` /
``flax.linen.ConvTranspose`` for the written-out transposed convolution.
"""

from __future__ import annotations

from functools import partial

import cv2
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mlcv.models.fcn import FCN, FCNTiny
from mlcv.models.upsample import (
    bilinear_conv_transpose,
    bilinear_init,
    bilinear_kernel,
    bilinear_kernel_size,
    transposed_conv2d,
    upsample_bilinear,
    upsample_nearest,
)

# XLA's RngBitGenerator keys: initialising the tiny FCN compiles in a fraction of threefry's time on a CPU;
# test inputs come from NumPy for the same reason.
KEY = jax.random.key(0, impl="rbg")
COURSE_X = np.array([[0.0, 1.0], [2.0, 3.0]])
COURSE_K = np.array([[0.0, 1.0], [2.0, 3.0]])


def test_course_worked_example_is_the_stride_1_result():
    """The course's table: input and kernel [[0, 1], [2, 3]] give [[0, 0, 1], [0, 4, 6], [4, 12, 9]].

    The course says stride 2, but a 2x2 input and a 2x2 kernel give (2 - 1) * s + 2 = 3 rows only at
    stride 1 (4 at stride 2); its numbers are the stride-1 result, which is what is checked here.
    """
    out = transposed_conv2d(jnp.asarray(COURSE_X), jnp.asarray(COURSE_K), 1)
    np.testing.assert_array_equal(out, [[0, 0, 1], [0, 4, 6], [4, 12, 9]])


def test_course_example_at_stride_2_by_hand():
    # At stride 2 the four scaled 2x2 kernels 0*K, 1*K, 2*K, 3*K tile the 4x4 output without overlap.
    out = transposed_conv2d(jnp.asarray(COURSE_X), jnp.asarray(COURSE_K), 2)
    np.testing.assert_array_equal(out, [[0, 0, 0, 1], [0, 0, 2, 3], [0, 2, 0, 3], [4, 6, 6, 9]])


def test_overlapping_stride_2_by_hand():
    # A 3x3 kernel of ones at stride 2: placed kernels overlap in the middle row and column, where the sums add.
    out = transposed_conv2d(jnp.array([[1.0, 2.0], [3.0, 4.0]]), jnp.ones((3, 3)), 2)
    expected = [
        [1, 1, 3, 2, 2],
        [1, 1, 3, 2, 2],
        [4, 4, 10, 6, 6],
        [3, 3, 7, 4, 4],
        [3, 3, 7, 4, 4],
    ]
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(("kernel_size", "stride"), [((2, 2), 1), ((3, 3), 2), ((4, 3), 2), ((3, 2), 3), ((2, 2), 3)])
def test_transposed_conv2d_equals_flax_and_lax(kernel_size, stride):
    """Flax (``transpose_kernel=False``) and lax correlate with the stored kernel: they need it rotated by 180°.

    Padding ``k - 1`` on each side of the dilated input gives the full ``(H - 1) * s + k`` output, also
    when ``k < s`` (flax's "VALID" would then add ``s - k`` zero rows). With ``transpose_kernel=True`` flax
    flips the kernel itself and takes it as ``[kh, kw, O, I]``.
    """
    kh, kw = kernel_size
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 4, 5, 3)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(kh, kw, 3, 2)), jnp.float32)
    expected = transposed_conv2d(x, kernel, stride)
    assert expected.shape == (2, 3 * stride + kh, 4 * stride + kw, 2)

    flipped = kernel[::-1, ::-1]
    pad = ((kh - 1, kh - 1), (kw - 1, kw - 1))
    dims = ("NHWC", "HWIO", "NHWC")
    np.testing.assert_allclose(
        jax.lax.conv_transpose(x, flipped, (stride, stride), pad, dimension_numbers=dims), expected, atol=1e-5
    )
    layer = nn.ConvTranspose(2, kernel_size, strides=(stride, stride), padding=pad, use_bias=False)
    np.testing.assert_allclose(layer.apply({"params": {"kernel": flipped}}, x), expected, atol=1e-5)
    layer_t = nn.ConvTranspose(
        2, kernel_size, strides=(stride, stride), padding=pad, use_bias=False, transpose_kernel=True
    )
    np.testing.assert_allclose(layer_t.apply({"params": {"kernel": kernel.swapaxes(2, 3)}}, x), expected, atol=1e-5)


def test_bilinear_kernel_values():
    # FCN's upsample_filt by hand: factor (size + 1) // 2, tent 1 - |t - centre| / factor.
    np.testing.assert_allclose(bilinear_kernel(4)[1], 0.75 * np.array([0.25, 0.75, 0.75, 0.25]))
    np.testing.assert_allclose(bilinear_kernel(4)[0], 0.25 * np.array([0.25, 0.75, 0.75, 0.25]))
    np.testing.assert_allclose(bilinear_kernel(5)[2], [1 / 3, 2 / 3, 1, 2 / 3, 1 / 3])
    np.testing.assert_allclose(bilinear_kernel(3), np.outer([0.5, 1, 0.5], [0.5, 1, 0.5]))
    assert [bilinear_kernel_size(f) for f in (1, 2, 3, 4, 8, 16, 32)] == [1, 4, 5, 8, 16, 32, 64]


def test_bilinear_init_is_diagonal_across_channels():
    kernel = bilinear_init(KEY, (4, 4, 3, 3))
    for c in range(3):
        np.testing.assert_allclose(kernel[:, :, c, c], bilinear_kernel(4))
    off_diagonal = kernel * (1 - jnp.eye(3))
    assert not np.any(off_diagonal)
    with pytest.raises(ValueError, match="channels must match"):
        bilinear_init(KEY, (4, 4, 3, 2))


def _cv2_resize(x: np.ndarray, factor: int, interpolation: int) -> np.ndarray:
    """OpenCV's resize of each image of an NHWC batch."""
    out = [cv2.resize(img, None, fx=factor, fy=factor, interpolation=interpolation) for img in np.asarray(x)]
    return np.stack([o.reshape(*o.shape[:2], -1) for o in out])


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_upsample_bilinear_and_nearest_equal_opencv(factor):
    # OpenCV's INTER_LINEAR also uses half-pixel centres and repeats the edge pixel: equal everywhere.
    x = np.random.default_rng(1).normal(size=(2, 5, 6, 3)).astype(np.float32)
    up = upsample_bilinear(jnp.asarray(x), factor)
    assert up.shape == (2, 5 * factor, 6 * factor, 3)
    np.testing.assert_allclose(up, _cv2_resize(x, factor, cv2.INTER_LINEAR), atol=1e-5)
    np.testing.assert_array_equal(upsample_nearest(jnp.asarray(x), factor), _cv2_resize(x, factor, cv2.INTER_NEAREST))


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_bilinear_conv_transpose_is_bilinear_upsampling(factor):
    """Kernel 2f - f % 2, stride f, "SAME": f * H rows, bilinear in the interior, the full output cropped by f // 2.

    Only the outer f // 2 rows and columns differ from OpenCV: there the transposed convolution's missing
    neighbour is zero, OpenCV's the edge pixel.
    """
    x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 5, 6, 3)), jnp.float32)
    layer = bilinear_conv_transpose(3, factor)
    variables = layer.init(KEY, x)
    up = layer.apply(variables, x)
    assert up.shape == (2, 5 * factor, 6 * factor, 3)
    b = factor // 2
    interior = (slice(None), slice(b, up.shape[1] - b), slice(b, up.shape[2] - b))
    np.testing.assert_allclose(up[interior], _cv2_resize(np.asarray(x), factor, cv2.INTER_LINEAR)[interior], atol=1e-5)
    np.testing.assert_allclose(up[interior], upsample_bilinear(x, factor)[interior], atol=1e-5)
    assert not np.allclose(up[:, 0], upsample_bilinear(x, factor)[:, 0])  # the border does differ

    # The padding: "SAME" is the course's full transposed convolution with f // 2 cropped from each side,
    # and flax's explicit padding k - 1 - f // 2 on each side.
    kernel = variables["params"]["kernel"]
    full = transposed_conv2d(x, kernel, factor)
    np.testing.assert_allclose(up, full[:, b : full.shape[1] - b, b : full.shape[2] - b], atol=1e-5)
    k = bilinear_kernel_size(factor)
    p = k - 1 - factor // 2
    explicit = nn.ConvTranspose(3, (k, k), strides=(factor, factor), padding=((p, p), (p, p)), use_bias=False)
    np.testing.assert_allclose(explicit.apply(variables, x), up, atol=1e-5)


def _tiny(variant: str, **kwargs) -> FCN:
    return FCNTiny(num_classes=3, variant=variant, **kwargs)


@pytest.fixture(scope="module")
def fcn8s_params() -> dict:
    """FCN-8s's initial parameters; FCN-32s's and 16s's are subsets, and none depends on the input size."""
    return jax.jit(_tiny("8s").init)(KEY, jnp.zeros((1, 64, 64, 3)))["params"]


@pytest.mark.parametrize("variant", ["32s", "16s", "8s"])
@pytest.mark.parametrize("options", [{}, {"learn_final_upsampling": True}, {"batch_norm": True}])
def test_fcn_output_shapes(variant, options):
    model = _tiny(variant, **options)
    x = jax.ShapeDtypeStruct((2, 64, 32, 3), jnp.float32)
    variables = jax.eval_shape(model.init, KEY, x)  # shapes only: nothing is compiled
    out = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=True, mutable=True, rngs={"dropout": KEY})[0], variables, x
    )
    assert out.shape == (2, 64, 32, 3)
    stride = {"32s": 32, "16s": 16, "8s": 8}[variant]
    assert (f"upscore{stride}" in variables["params"]) == bool(options.get("learn_final_upsampling"))
    assert ("batch_stats" in variables) == bool(options.get("batch_norm"))


def test_fcn_rejects_input_not_divisible_by_32():
    model = _tiny("8s")
    with pytest.raises(ValueError, match=r"\(1, 48, 64, 3\).*divisible by 32"):
        jax.eval_shape(model.init, KEY, jax.ShapeDtypeStruct((1, 48, 64, 3), jnp.float32))


def _upscore2(score: jax.Array) -> jax.Array:
    """2x bilinear by the course's transposed convolution, cropped by 1 on each side (the paper's upscore2)."""
    c = score.shape[-1]
    kernel = jnp.asarray(bilinear_kernel(4)[:, :, None, None] * np.eye(c), score.dtype)
    return transposed_conv2d(score, kernel, 2)[:, 1:-1, 1:-1]


def test_fcn8s_and_16s_at_init_are_the_32s_scores_upsampled(fcn8s_params):
    """With the skip score layers at zero, FCN-8s (16s) is FCN-32s's score_fr upsampled 2x, 2x, 8x (2x, 16x).

    FCN-32s runs on FCN-8s's parameters (its own are a subset), as when the paper grows 8s from 32s.
    """
    x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 64, 64, 3)), jnp.float32)
    params = fcn8s_params
    for name in ("score_pool4", "score_pool3"):
        assert not np.any(params[name]["kernel"]) and not np.any(params[name]["bias"])
    for name in ("upscore2", "upscore_pool4"):
        np.testing.assert_allclose(params[name]["kernel"][:, :, 1, 1], bilinear_kernel(4))

    coarse = {k: v for k, v in params.items() if k not in ("score_pool4", "score_pool3", "upscore2", "upscore_pool4")}
    apply32 = jax.jit(partial(_tiny("32s").apply, capture_intermediates=lambda m, _: m.name == "score_fr"))
    out32, state = apply32({"params": coarse}, x)
    score = state["intermediates"]["score_fr"]["__call__"][0]
    assert score.shape == (2, 2, 2, 3)
    np.testing.assert_allclose(out32, _cv2_resize(np.asarray(score), 32, cv2.INTER_LINEAR), atol=1e-5)

    apply8 = jax.jit(_tiny("8s").apply)
    out8 = apply8({"params": params}, x)
    expected8 = _cv2_resize(np.asarray(_upscore2(_upscore2(score))), 8, cv2.INTER_LINEAR)
    np.testing.assert_allclose(out8, expected8, atol=1e-5)
    sixteen = {k: v for k, v in params.items() if k not in ("score_pool3", "upscore_pool4")}
    out16 = jax.jit(_tiny("16s").apply)({"params": sixteen}, x)
    np.testing.assert_allclose(out16, _cv2_resize(np.asarray(_upscore2(score)), 16, cv2.INTER_LINEAR), atol=1e-5)

    # Not vacuous: once the pool3 scores are non-zero, FCN-8s departs from the coarse path.
    moved = {**params, "score_pool3": {**params["score_pool3"], "bias": jnp.ones(3)}}
    assert not np.allclose(apply8({"params": moved}, x), expected8, atol=1e-3)


def test_fcn8s_training_lowers_the_loss(fcn8s_params):
    # Three classes, visible in the input as two coordinate ramps: 0, 1 or 2 of "right half", "bottom half".
    rows, cols = jnp.meshgrid(jnp.linspace(-1, 1, 32), jnp.linspace(-1, 1, 32), indexing="ij")
    image = jnp.stack([rows, cols, rows * cols], -1)[None]
    labels = ((rows > 0).astype(jnp.int32) + (cols > 0))[None]
    model = _tiny("8s")
    opt = optax.adam(1e-2)

    def loss_fn(p):
        logits = model.apply({"params": p}, image)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    @jax.jit
    def step(p, s):
        loss, grads = jax.value_and_grad(loss_fn)(p)
        updates, s = opt.update(grads, s, p)
        return optax.apply_updates(p, updates), s, loss

    params, opt_state = fcn8s_params, opt.init(fcn8s_params)
    losses = []
    for _ in range(20):
        params, opt_state, loss = step(params, opt_state)
        losses.append(float(loss))
    assert losses[-1] < 0.8 * losses[0], losses

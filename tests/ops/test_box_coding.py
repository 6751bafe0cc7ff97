"""Box IoU, GIoU, the R-CNN box parametrisation and the regression losses, by hand and under jit and vmap."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from mlcv.ops import box_coding as bc

# Jitted once here: eager jnp compiles every primitive separately, which is several times slower for tests.
iou = jax.jit(bc.iou_matrix)
giou = jax.jit(bc.giou_matrix)
encode = jax.jit(bc.encode, static_argnames="weights")
decode = jax.jit(bc.decode, static_argnames=("weights", "scale_clamp"))
smooth_l1 = jax.jit(bc.smooth_l1, static_argnames="beta")


def _random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    yx = rng.uniform(0, 50, (n, 2))
    hw = rng.uniform(1, 30, (n, 2))
    return np.concatenate([yx, yx + hw], axis=1).astype(np.float32)


def _iou_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros((len(a), len(b)))
    for i, p in enumerate(a.astype(np.float64)):
        for j, q in enumerate(b.astype(np.float64)):
            ih = max(min(p[2], q[2]) - max(p[0], q[0]), 0)
            iw = max(min(p[3], q[3]) - max(p[1], q[1]), 0)
            union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - ih * iw
            out[i, j] = ih * iw / union
    return out


def test_iou_by_hand():
    a = np.array([[0, 0, 2, 2], [0, 0, 4, 4]], np.float32)
    b = np.array([[1, 1, 3, 3], [10, 10, 11, 11], [0, 0, 2, 2], [1, 1, 2, 2]], np.float32)
    # [0,2]^2 and [1,3]^2 share a unit square: 1 / (4 + 4 - 1); [0,2]^2 inside [0,4]^2: 4 / 16; [1,2]^2 in it 1/16
    expected = [[1 / 7, 0, 1, 1 / 4], [4 / 16, 0, 4 / 16, 1 / 16]]
    np.testing.assert_allclose(iou(a, b), expected, rtol=1e-6)
    np.testing.assert_allclose(iou(b, a), np.transpose(expected), rtol=1e-6)
    np.testing.assert_allclose(bc.box_area(a), [4, 16])


def test_iou_of_empty_boxes_is_zero_with_finite_gradients():
    a = np.array([[0, 0, 0, 0], [2, 2, 2, 5], [3, 3, 1, 1]], np.float32)  # zero, a line, inverted
    b = np.array([[0, 0, 0, 0], [0, 0, 4, 4]], np.float32)
    np.testing.assert_array_equal(iou(a, b), 0.0)
    np.testing.assert_array_equal(bc.box_area(a), 0.0)
    grad = jax.jit(jax.grad(lambda x: bc.iou_matrix(x, b).sum() + bc.giou_matrix(x, b).sum()))(a)
    assert np.isfinite(np.asarray(grad)).all()


def test_iou_matches_a_direct_loop_and_broadcasts_over_batches():
    rng = np.random.default_rng(0)
    a, b = _random_boxes(rng, 6 * 7).reshape(6, 7, 4), _random_boxes(rng, 6 * 5).reshape(6, 5, 4)
    got = np.asarray(iou(a, b))
    assert got.shape == (6, 7, 5)
    for i in range(6):
        np.testing.assert_allclose(got[i], _iou_reference(a[i], b[i]), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(jax.jit(jax.vmap(bc.iou_matrix))(a, b), got, rtol=1e-6)
    # One set of anchors against a batch of ground truths broadcasts too.
    np.testing.assert_allclose(iou(a[0], b)[2], _iou_reference(a[0], b[2]), rtol=1e-5, atol=1e-7)


def test_giou_by_hand():
    a = np.array([[0, 0, 2, 2], [0, 0, 1, 1]], np.float32)
    b = np.array([[1, 1, 3, 3], [2, 2, 3, 3], [0, 0, 1, 1]], np.float32)
    # IoU - (hull - union) / hull. (0,0,2,2) vs (1,1,3,3): 1/7 - (9 - 7)/9 = -5/63; vs (2,2,3,3): 0 - (9 - 5)/9;
    # vs (0,0,1,1), inside it: 1/4 - 0. (0,0,1,1) vs (1,1,3,3): -(9 - 5)/9; vs (2,2,3,3): -(9 - 2)/9; itself: 1
    expected = [[-5 / 63, -4 / 9, 1 / 4], [-4 / 9, -7 / 9, 1]]
    np.testing.assert_allclose(giou(a, b), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(jax.vmap(giou)(a[None], b[None])[0], expected, rtol=1e-6, atol=1e-7)
    # Two empty boxes at one point: hull 0, GIoU 0 rather than NaN.
    assert float(giou(np.zeros((1, 4)), np.zeros((1, 4)))[0, 0]) == 0.0


def test_encode_by_hand_with_and_without_weights():
    anchor = np.array([0, 0, 10, 20], np.float32)  # centre (5, 10), size (10, 20)
    box = np.array([2, 4, 22, 14], np.float32)  # centre (12, 9), size (20, 10)
    # (t_y, t_x, t_h, t_w) = ((12 - 5) / 10, (9 - 10) / 20, log(20 / 10), log(10 / 20))
    expected = np.array([0.7, -0.05, np.log(2), -np.log(2)])
    np.testing.assert_allclose(encode(box, anchor), expected, rtol=1e-6)
    np.testing.assert_allclose(encode(box, anchor, (10, 10, 5, 5)), expected * [10, 10, 5, 5], rtol=1e-6)
    np.testing.assert_allclose(decode(expected, anchor), box, atol=1e-5)
    np.testing.assert_allclose(decode(expected * [10, 10, 5, 5], anchor, (10, 10, 5, 5)), box, atol=1e-5)


@pytest.mark.parametrize("weights", [(1, 1, 1, 1), (10, 10, 5, 5)])
def test_decode_inverts_encode_on_a_batch_under_jit_and_vmap(weights):
    rng = np.random.default_rng(1)
    boxes, anchors = _random_boxes(rng, 24).reshape(3, 8, 4), _random_boxes(rng, 8)
    enc = encode(boxes, anchors, weights)
    assert enc.shape == (3, 8, 4)
    np.testing.assert_allclose(jax.jit(jax.vmap(lambda b: bc.encode(b, anchors, weights)))(boxes), enc, rtol=1e-6)
    np.testing.assert_allclose(decode(enc, anchors, weights), boxes, atol=1e-4)


def test_decode_clamps_the_log_scale_and_encode_keeps_padding_finite():
    anchor = np.array([0, 0, 16, 16], np.float32)
    big = np.asarray(decode(np.array([0, 0, 100.0, 1e4], np.float32), anchor))
    # exp(min(t, log(1000/16))) * 16 = 1000 pixels about the centre (8, 8)
    np.testing.assert_allclose(big, [8 - 500, 8 - 500, 8 + 500, 8 + 500], rtol=1e-5)
    assert np.isfinite(np.asarray(encode(np.zeros(4, np.float32), anchor))).all()
    assert np.isfinite(np.asarray(encode(anchor, np.zeros(4, np.float32)))).all()


def test_clip_boxes():
    b = np.array([[-3, 2, 5, 40], [1, -1, 30, 3]], np.float32)
    np.testing.assert_array_equal(bc.clip_boxes(b, 20, 10), [[0, 2, 5, 10], [1, 0, 20, 3]])


def test_smooth_l1_and_l2_by_hand():
    x = np.array([-3.0, -0.5, 0.0, 0.5, 2.0], np.float32)
    # |x| < 1: 0.5 x^2, else |x| - 0.5
    np.testing.assert_allclose(smooth_l1(x), [2.5, 0.125, 0, 0.125, 1.5])
    # beta = 0.5: 0.2 -> 0.5 * 0.04 / 0.5 = 0.04; 1 -> 1 - 0.25; continuous at |x| = beta (both 0.25)
    np.testing.assert_allclose(smooth_l1(np.array([0.2, 1.0, 0.5]), beta=0.5), [0.04, 0.75, 0.25], rtol=1e-6)
    np.testing.assert_allclose(smooth_l1(x, beta=0.0), np.abs(x))
    np.testing.assert_allclose(bc.l2(x), 0.5 * x**2)
    # The two agree below beta = 1: Fast R-CNN's loss is R-CNN's squared error with the outliers made linear.
    small = np.linspace(-0.99, 0.99, 11)
    np.testing.assert_allclose(smooth_l1(small), bc.l2(small), rtol=1e-6)
    np.testing.assert_allclose(jax.jit(jax.grad(lambda v: bc.smooth_l1(v).sum()))(x), [-1, -0.5, 0, 0.5, 1])

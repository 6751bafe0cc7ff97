"""README claims of matching the course, each checked against the course's equation written out in the test.

Every expected value here is a hand calculation or the equation coded from scratch in NumPy, never mlcv's own
output. The equation numbers are those that mlcv's docstrings and the README cite; where a form is taken from the
paper that the docstring names (the course's text is not in this repository), the test says so.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlcv.losses import depth, embedding
from mlcv.metrics import verification
from mlcv.ops import box_coding, cost_volume

# --- Object detection (course §10.1-10.2): README "R-CNN's box deltas (eqs. 49-53) with smooth L1 and L2 (eq. 54)"


def test_rcnn_box_deltas_course_eqs_49_to_53_by_hand():
    """Course eqs. 49-53, R-CNN's parametrisation (Girshick et al. 2014, appendix C), with centre (x, y), size (w, h):
    targets t_x = (G_x - P_x) / P_w, t_y = (G_y - P_y) / P_h, t_w = log(G_w / P_w), t_h = log(G_h / P_h), and the
    prediction G^_x = P_w d_x + P_x, G^_y = P_h d_y + P_y, G^_w = P_w exp(d_w), G^_h = P_h exp(d_h).

    mlcv's boxes are (ymin, xmin, ymax, xmax) and its deltas (t_y, t_x, t_h, t_w)."""
    # Proposal P: centre (x, y) = (30, 20), size (w, h) = (40, 10). Ground truth G: centre (38, 17), size (20, 30).
    proposal = np.array([15.0, 10.0, 25.0, 50.0], np.float32)
    truth = np.array([2.0, 28.0, 32.0, 48.0], np.float32)
    t_x, t_y = (38 - 30) / 40, (17 - 20) / 10  # 0.2, -0.3
    t_w, t_h = math.log(20 / 40), math.log(30 / 10)
    np.testing.assert_allclose(box_coding.encode(truth, proposal), [t_y, t_x, t_h, t_w], rtol=1e-6)
    # A prediction d = (d_x, d_y, d_w, d_h) = (0.1, 0.5, log 1.5, 0): centre (40 * 0.1 + 30, 10 * 0.5 + 20) = (34, 25),
    # size (40 * 1.5, 10 * 1) = (60, 10), so the box spans x 4..64 and y 20..30.
    predicted = box_coding.decode(np.array([0.5, 0.1, 0.0, math.log(1.5)], np.float32), proposal)
    np.testing.assert_allclose(predicted, [20.0, 4.0, 30.0, 64.0], rtol=1e-6)


def test_box_regression_losses_course_eq_54_by_hand():
    """Course eq. 54: Fast R-CNN's smooth L1, 0.5 x^2 where |x| < 1 and |x| - 0.5 elsewhere, summed over the four
    residuals t_i - v_i; R-CNN's squared error 0.5 x^2 beside it (the form mlcv's docstrings cite for eq. 54)."""
    residuals = np.array([0.4, -1.5, 2.0, -0.2], np.float32)
    # smooth L1: 0.5 * 0.16 + (1.5 - 0.5) + (2 - 0.5) + 0.5 * 0.04 = 0.08 + 1 + 1.5 + 0.02
    assert float(jnp.sum(box_coding.smooth_l1(residuals))) == pytest.approx(2.6, rel=1e-6)
    # L2: 0.5 * (0.16 + 2.25 + 4 + 0.04)
    assert float(jnp.sum(box_coding.l2(residuals))) == pytest.approx(3.225, rel=1e-6)


# --- Metric learning (course §11.5-11.6): README eqs. 64, 65, 66-67, 70, and "where the course's equations sum,
# the loss here is a mean (the gradient's scale, not its direction, differs)".

# Three points on a line, labels 0, 0, 1: pairs (0, 1) positive at d = 0.5, (0, 2) and (1, 2) negative at 0.8, 0.3.
LINE = np.array([[0.0], [0.5], [0.8]])
LINE_LABELS = np.array([0, 0, 1])


def test_contrastive_margin_form_course_eqs_66_67_by_hand_summed_and_as_a_mean():
    """Course eqs. 66-67 (Hadsell, Chopra & LeCun's margin form, without its factor 1/2, as the docstring states):
    y d^2 + (1 - y) max(0, m - d)^2 per pair. The course sums over pairs; mlcv averages (README): the loss is the
    sum over the 3 pairs divided by 3, and so is its gradient (same direction)."""
    terms = [0.5**2, (1.0 - 0.8) ** 2, (1.0 - 0.3) ** 2]  # 0.25, 0.04, 0.49
    course_sum = sum(terms)  # 0.78

    def mean_loss(x):
        return embedding.contrastive_loss(x, LINE_LABELS, margin=1.0, squared=True)[0]

    def course_loss(x):  # eqs. 66-67 summed over the pairs i < j, written out
        d01, d02, d12 = jnp.abs(x[0, 0] - x[1, 0]), jnp.abs(x[0, 0] - x[2, 0]), jnp.abs(x[1, 0] - x[2, 0])
        return d01**2 + jnp.maximum(0.0, 1.0 - d02) ** 2 + jnp.maximum(0.0, 1.0 - d12) ** 2

    x = jnp.asarray(LINE, jnp.float32)
    course_value, course_grad = jax.jit(jax.value_and_grad(course_loss))(x)
    value, grad = jax.jit(jax.value_and_grad(mean_loss))(x)
    assert float(course_value) == pytest.approx(course_sum, rel=1e-6)
    assert float(value) == pytest.approx(course_sum / 3, rel=1e-6)
    np.testing.assert_allclose(grad, course_grad / 3, rtol=1e-5, atol=1e-7)
    # mlcv's default (config.loss.squared False) is the unsquared variant d and max(0, m - d): 0.5 + 0.2 + 0.7.
    unsquared, _ = embedding.contrastive_loss(x, LINE_LABELS, margin=1.0, squared=False)
    assert float(unsquared) == pytest.approx(1.4 / 3, rel=1e-6)


def test_contrastive_unbounded_course_eq_65_by_hand():
    """Course eq. 65, the unbounded form: y d^2 - (1 - y) d^2 per pair, averaged over the 3 pairs here."""
    got, _ = embedding.contrastive_loss(jnp.asarray(LINE, jnp.float32), LINE_LABELS, margin=None, squared=True)
    assert float(got) == pytest.approx((0.5**2 - 0.8**2 - 0.3**2) / 3, rel=1e-6)


def test_triplet_loss_course_eq_70_by_hand():
    """Course eq. 70, max(0, d(a, p) - d(a, n) + margin), on the two triplets of a = [0, 0], p = [0.3, 0.4] (same
    label) and n = [1.2, 0]: (a, p, n) and (p, a, n). Euclidean d by default, its square with squared=True
    (FaceNet's). The mean is over the triplets with a positive loss (README)."""
    x = jnp.array([[0.0, 0.0], [0.3, 0.4], [1.2, 0.0]])
    labels = np.array([0, 0, 1])
    # d(a, p) = 0.5, d(a, n) = 1.2, d(p, n) = sqrt(0.81 + 0.16) = sqrt(0.97)
    first, second = 0.5 - 1.2 + 1.0, 0.5 - math.sqrt(0.97) + 1.0
    got, stats = embedding.triplet_loss(x, labels, margin=1.0, mining="batch_all")
    assert float(got) == pytest.approx((first + second) / 2, rel=1e-6)
    assert int(stats["num_triplets"]) == 2
    # Squared: 0.25 - 1.44 + 1 < 0 (inactive), 0.25 - 0.97 + 1 = 0.28: the mean over the one active triplet.
    got_sq, stats_sq = embedding.triplet_loss(x, labels, margin=1.0, mining="batch_all", squared=True)
    assert float(got_sq) == pytest.approx(0.28, rel=1e-5)
    assert float(stats_sq["active_fraction"]) == pytest.approx(0.5)


def test_deepface_weighted_distance_course_eq_64_by_hand():
    """Course eq. 64, DeepFace's weighted L1 distance d(f1, f2) = sum_k alpha_k |f1_k - f2_k|, on features divided
    by their training maxima and L2-normalised (README, DeepFace section)."""
    train = np.array([[3.0, 0.0, 4.0], [1.0, 2.0, 2.0]])  # per-component maxima of |f|: 3, 2, 4
    pair = np.array([[3.0, 0.0, 4.0], [1.5, 2.0, 0.0]])
    # Divided by the maxima: [1, 0, 1] and [0.5, 1, 0]; L2-normalised: [1, 0, 1] / sqrt 2, [0.5, 1, 0] / sqrt 1.25.
    f1 = np.array([1.0, 0.0, 1.0]) / math.sqrt(2)
    f2 = np.array([0.5, 1.0, 0.0]) / math.sqrt(1.25)
    feats = verification.deepface_normalise(pair, verification.deepface_scale(train))
    np.testing.assert_allclose(feats, [f1, f2], rtol=1e-12)
    alpha = np.array([1.0, 2.0, 1.0])
    expected = 1 * abs(1 / math.sqrt(2) - 0.5 / math.sqrt(1.25)) + 2 * (1 / math.sqrt(1.25)) + 1 * (1 / math.sqrt(2))
    got = verification.pair_distances(feats, np.array([[0, 1]]), "deepface", alpha)
    np.testing.assert_allclose(got, [expected], rtol=1e-12)


# --- Deep stereo and monocular depth (course §12.1-12.2): README eqs. 74-78.


def test_soft_argmin_course_eq_74_by_hand():
    """Course eq. 74, GC-Net's soft argmin: d^ = sum_d d softmax(-c)_d over disparities d = 0, 1, 2, 3."""
    costs = np.array([2.0, 0.0, 1.0, 3.0], np.float32)
    w = [math.exp(-2.0), 1.0, math.exp(-1.0), math.exp(-3.0)]
    expected = sum(d * wd for d, wd in enumerate(w)) / sum(w)
    assert float(cost_volume.soft_argmin(jnp.asarray(costs))) == pytest.approx(expected, rel=1e-6)


def test_edge_aware_smoothness_course_eq_76_by_hand():
    """Course eq. 76: |dx d| e^{-|dx I|} + |dy d| e^{-|dy I|}, forward differences, each term averaged over its own
    map (W - 1 columns, H - 1 rows: the docstring's form). A 2 x 3 example written out."""
    disp = np.array([[[1.0, 2.0, 4.0], [1.0, 1.0, 1.0]]], np.float32)
    image = np.array([[[0.0, 0.0, 1.0], [0.0, 0.5, 1.0]]], np.float32)[..., None]
    # x: |dx d| = [1, 2] and [0, 0]; |dx I| = [0, 1] and [0.5, 0.5] -> (1 + 2 / e + 0 + 0) / 4
    # y: |dy d| = [0, 1, 3]; |dy I| = [0, 0.5, 0] -> (0 + e^-0.5 + 3) / 3
    expected = (1 + 2 / math.e) / 4 + (math.exp(-0.5) + 3) / 3
    assert float(depth.smoothness_loss(disp, image)) == pytest.approx(expected, rel=1e-6)


def test_left_right_consistency_course_eq_77_by_hand():
    """Course eq. 77: mean |d_l(x) - d_r(x - d_l(x))| (and mean |d_r(x) - d_l(x + d_r(x))| for the right view),
    d_r sampled linearly. mlcv's disparities are positive, d = u_L - u_R, hence x - d (issue 15 notes that the
    course prints x + d for eq. 77)."""
    d_l = np.array([[[0.0, 1.0, 2.0, 1.5]]], np.float32)
    d_r = np.array([[[1.0, 2.0, 1.0, 0.0]]], np.float32)
    # left: x = 0 reads d_r(0) = 1 -> 1; x = 1 reads d_r(0) -> 0; x = 2 reads d_r(0) -> 1; x = 3 reads
    # d_r(1.5) = (2 + 1) / 2 -> 0. Mean 2 / 4.
    assert float(depth.left_right_consistency(d_l, d_r)) == pytest.approx(0.5, rel=1e-6)
    # right: x = 0 reads d_l(1) = 1 -> 0; x = 1 reads d_l(3) = 1.5 -> 0.5; x = 2 reads d_l(3) -> 0.5;
    # x = 3 reads d_l(3) -> 1.5. Mean 2.5 / 4.
    assert float(depth.left_right_consistency(d_l, d_r, view="right")) == pytest.approx(0.625, rel=1e-6)


def _ssim3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SSIM of every 3 x 3 window of two [H, W] images (population statistics, C1 = 0.01^2, C2 = 0.03^2)."""
    h, w = a.shape
    out = np.empty((h - 2, w - 2))
    for i in range(h - 2):
        for j in range(w - 2):
            x, y = a[i : i + 3, j : j + 3], b[i : i + 3, j : j + 3]
            mx, my = x.mean(), y.mean()
            vx, vy, cov = ((x - mx) ** 2).mean(), ((y - my) ** 2).mean(), ((x - mx) * (y - my)).mean()
            c1, c2 = 0.01**2, 0.03**2
            out[i, j] = (2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return out


def _shift(src: np.ndarray, disp: np.ndarray, sign: int) -> np.ndarray:
    """src[y, x + sign d(y, x)] for integer d, the column clamped to the image (Monodepth's border)."""
    h, w = disp.shape
    cols = np.clip(np.arange(w)[None, :] + sign * disp.astype(int), 0, w - 1)
    return src[np.arange(h)[:, None], cols]


def _appearance(img: np.ndarray, recon: np.ndarray, alpha: float = 0.85) -> float:
    """Eq. 75: alpha (1 - SSIM) / 2 + (1 - alpha) |I - I~|, the SSIM part clipped to [0, 1]."""
    dssim = np.clip((1 - _ssim3(img, recon)) / 2, 0, 1)
    return alpha * dssim.mean() + (1 - alpha) * np.abs(img - recon).mean()


def _smoothness(d: np.ndarray, img: np.ndarray) -> float:
    """Eq. 76 for one [H, W] map."""
    gx = np.abs(np.diff(d, axis=1)) * np.exp(-np.abs(np.diff(img, axis=1)))
    gy = np.abs(np.diff(d, axis=0)) * np.exp(-np.abs(np.diff(img, axis=0)))
    return gx.mean() + gy.mean()


@pytest.mark.parametrize("decay", [True, False])
def test_monodepth_total_course_eq_78_from_eqs_75_to_77_in_numpy(decay):
    """Course eq. 78: C_s = alpha_ap (C_ap^l + C_ap^r) + alpha_ds (C_ds^l + C_ds^r) + alpha_lr (C_lr^l + C_lr^r),
    summed over scales, with eqs. 75 (appearance of the other view warped by this view's disparity), 76 and 77
    written out in NumPy on integer disparities. alpha_ap 1, alpha_ds 0.1, alpha_lr 1, SSIM share 0.85. With
    ``smoothness_decay`` the smoothness of scale s is divided by 2^s (Monodepth's code; README says the paper
    does not)."""
    rng = np.random.default_rng(0)
    scales = []
    for h, w, dmax in ((6, 8, 3), (3, 4, 2)):
        left, right = rng.uniform(0, 1, (2, h, w))
        d_l, d_r = rng.integers(0, dmax, (2, h, w)).astype(np.float64)
        scales.append((left, right, d_l, d_r))
    ap = ds = lr = 0.0
    for s, (left, right, d_l, d_r) in enumerate(scales):
        ap += _appearance(left, _shift(right, d_l, -1)) + _appearance(right, _shift(left, d_r, +1))
        ds += (_smoothness(d_l, left) + _smoothness(d_r, right)) / (2**s if decay else 1)
        lr += np.abs(d_l - _shift(d_r, d_l, -1)).mean() + np.abs(d_r - _shift(d_l, d_r, +1)).mean()
    expected = 1.0 * ap + 0.1 * ds + 1.0 * lr

    def arrays(i, image):
        return [jnp.asarray(sc[i][None, ..., None] if image else sc[i][None], jnp.float32) for sc in scales]

    loss = jax.jit(depth.monodepth_loss, static_argnames="smoothness_decay")
    total, terms = loss(arrays(0, True), arrays(1, True), arrays(2, False), arrays(3, False), smoothness_decay=decay)
    assert float(terms["appearance"]) == pytest.approx(ap, rel=1e-5)
    assert float(terms["smoothness"]) == pytest.approx(ds, rel=1e-5)
    assert float(terms["left_right"]) == pytest.approx(lr, rel=1e-5)
    assert float(total) == pytest.approx(expected, rel=1e-5)

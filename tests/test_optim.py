"""Tests of mlcv.optim: learning-rate schedules and optimizer updates against formulas written out by hand."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from mlcv import optim
from mlcv.config import ConfigError


def _cfg(**kwargs):
    return ml_collections.ConfigDict(dict(kwargs))


def _values(sched, steps):
    return [float(sched(t)) for t in steps]


def test_constant_schedule():
    """constant: lr at every step (the default when schedule is not set)."""
    for cfg in (_cfg(name="sgd", lr=0.3, schedule="constant"), _cfg(name="sgd", lr=0.3)):
        np.testing.assert_allclose(_values(optim.schedule(cfg, 100), [0, 1, 50, 99, 100]), [0.3] * 5, rtol=1e-6)


def test_cosine_schedule():
    """cosine: lr_t = lr * (1 + cos(pi * t / T)) / 2, constant at 0 after T."""
    lr, T = 0.4, 100
    sched = optim.schedule(_cfg(name="sgd", lr=lr, schedule="cosine"), T)
    steps = [0, 10, 25, 50, 75, 100, 150]
    expected = [lr * (1 + math.cos(math.pi * min(t, T) / T)) / 2 for t in steps]
    np.testing.assert_allclose(_values(sched, steps), expected, rtol=1e-5, atol=1e-7)
    # Written out: t = 50 is half of lr, t = 25 is lr * (1 + sqrt(2)/2) / 2.
    assert float(sched(50)) == pytest.approx(0.2, rel=1e-5)
    assert float(sched(25)) == pytest.approx(0.4 * (1 + 2**-0.5) / 2, rel=1e-5)


def test_cosine_schedule_end_factor():
    """cosine with end_lr_factor a: lr * (a + (1 - a) * (1 + cos(pi t / T)) / 2), ending at a * lr."""
    lr, T, a = 1.0, 10, 0.1
    sched = optim.schedule(_cfg(name="sgd", lr=lr, schedule="cosine", end_lr_factor=a), T)
    steps = [0, 5, 10, 20]
    expected = [lr * (a + (1 - a) * (1 + math.cos(math.pi * min(t, T) / T)) / 2) for t in steps]
    np.testing.assert_allclose(_values(sched, steps), expected, rtol=1e-5)
    assert float(sched(10)) == pytest.approx(0.1, rel=1e-5)


def test_linear_schedule():
    """linear: lr * (1 - t / T) to 0 by default, and to lr * end_lr_factor when set."""
    lr, T = 0.5, 20
    sched = optim.schedule(_cfg(name="sgd", lr=lr, schedule="linear"), T)
    np.testing.assert_allclose(_values(sched, [0, 5, 10, 20, 30]), [0.5, 0.375, 0.25, 0.0, 0.0], atol=1e-7)
    sched = optim.schedule(_cfg(name="sgd", lr=lr, schedule="linear", end_lr_factor=0.2), T)
    # lr + (0.2 lr - lr) * t / T: 0.5 -> 0.1
    np.testing.assert_allclose(_values(sched, [0, 10, 20, 25]), [0.5, 0.3, 0.1, 0.1], rtol=1e-6)


def test_warmup_then_cosine():
    """Warm-up W: lr * t / W for t < W, then cosine over the remaining T - W steps."""
    lr, W, T = 0.2, 10, 110
    sched = optim.schedule(_cfg(name="sgd", lr=lr, schedule="cosine", warmup_steps=W), T)
    steps = [0, 1, 5, 9, 10, 35, 60, 110]

    def expected(t):
        if t < W:
            return lr * t / W
        return lr * (1 + math.cos(math.pi * (t - W) / (T - W))) / 2

    np.testing.assert_allclose(_values(sched, steps), [expected(t) for t in steps], rtol=1e-5, atol=1e-7)
    assert float(sched(0)) == 0.0
    assert float(sched(5)) == pytest.approx(0.1)
    assert float(sched(60)) == pytest.approx(0.1, rel=1e-5)


def test_warmup_then_constant():
    """Warm-up into a constant schedule: 0, lr/4, lr/2, then lr from step 4 on."""
    sched = optim.schedule(_cfg(name="sgd", lr=0.8, warmup_steps=4), 100)
    np.testing.assert_allclose(_values(sched, [0, 1, 2, 4, 50]), [0.0, 0.2, 0.4, 0.8, 0.8], rtol=1e-6)


def test_step_schedule_milestones_steps():
    """step: lr / 10 from step 30 on, lr / 100 from step 60 on (milestones count from step 0)."""
    sched = optim.schedule(_cfg(name="sgd", lr=0.5, schedule="step", milestones_steps=(60, 30)), 100)
    steps = [0, 29, 30, 59, 60, 99, 150]
    np.testing.assert_allclose(_values(sched, steps), [0.5, 0.5, 0.05, 0.05, 0.005, 0.005, 0.005], rtol=1e-6)


def test_step_schedule_milestones_epochs_factor_and_warmup():
    """milestones_epochs (1, 2.5) at 10 steps per epoch are steps 10 and 25; step_factor 2 halves; warm-up 4 first."""
    cfg = _cfg(name="sgd", lr=0.8, schedule="step", milestones_epochs=(1, 2.5), step_factor=2.0, warmup_steps=4)
    sched = optim.schedule(cfg, 50, steps_per_epoch=10)
    steps = [0, 2, 4, 9, 10, 24, 25, 49]
    expected = [0.0, 0.4, 0.8, 0.8, 0.4, 0.4, 0.2, 0.2]
    np.testing.assert_allclose(_values(sched, steps), expected, rtol=1e-6, atol=1e-8)
    # milestones_steps wins over milestones_epochs.
    sched = optim.schedule(_cfg(name="sgd", lr=1.0, schedule="step", milestones_steps=(5,), milestones_epochs=(1,)), 50)
    np.testing.assert_allclose(_values(sched, [4, 5]), [1.0, 0.1], rtol=1e-6)
    # A repeated milestone divides twice.
    sched = optim.schedule(_cfg(name="sgd", lr=1.0, schedule="step", milestones_steps=(5, 5)), 50)
    np.testing.assert_allclose(_values(sched, [4, 5]), [1.0, 0.01], rtol=1e-6)


def test_step_schedule_without_milestones_raises():
    """step with no milestones names config.optim.milestones_steps; epochs without steps_per_epoch say so."""
    with pytest.raises(ConfigError, match=r"config\.optim\.milestones_steps"):
        optim.schedule(_cfg(name="sgd", lr=0.1, schedule="step"), 10)
    with pytest.raises(ConfigError, match=r"config\.optim\.milestones_steps"):
        optim.make(_cfg(name="sgd", lr=0.1, schedule="step"), 10)
    with pytest.raises(ConfigError, match="steps_per_epoch"):
        optim.schedule(_cfg(name="sgd", lr=0.1, schedule="step", milestones_epochs=(1,)), 10)


def _onecycle(t, lo, peak, end, up, n):
    """Written out: linear lo -> peak over [0, up), then end + (peak - end) (1 + cos(pi (t - up) / (n - up))) / 2."""
    if t < up:
        return lo + (peak - lo) * t / up
    return end + (peak - end) * (1 + math.cos(math.pi * min(t - up, n - up) / (n - up))) / 2


def _course_onecycle(t, total, p, lr_0, lr_max, lr_end, m_min, m_max):
    """The course's eqs. 38-39 for iteration t of I = ``total``, rising for the fraction p, as printed except that
    the falling line starts from lr_max where eq. 38 prints lr_0 (lr_0 there would jump from lr_max to lr_0 at
    t = pI)."""
    if t <= p * total:
        lr = lr_0 + (lr_max - lr_0) * t / (p * total)
        m = m_max - (m_max - m_min) * t / (p * total)
    else:
        f = min(t - p * total, (1 - p) * total) / ((1 - p) * total)  # held at the end values after I
        lr = lr_max - (lr_max - lr_end) * f
        m = m_min + (m_max - m_min) * f
    return lr, m


@pytest.mark.parametrize("pct,T", [(0.3, 100), (0.25, 40), (0.45, 200)])
def test_onecycle_is_the_courses_eqs_38_39_at_20_points(pct, T):
    """The default one-cycle (onecycle_anneal 'linear') against eqs. 38-39 written out, at 20 steps spread over
    the rise, the peak, the fall and past the end, for the learning rate and the momentum moved against it."""
    lr, div, final = 0.4, 25.0, 1e4
    cfg = _cfg(name="momentum", lr=lr, schedule="onecycle", onecycle_pct=pct, div_factor=div, final_div=final)
    steps = sorted({round(k * T / 18) for k in range(18)} | {round(pct * T), T + 5})
    assert len(steps) == 20
    lr_sched, m_sched = optim.schedule(cfg, T), optim.momentum_schedule(cfg, T)
    course = [_course_onecycle(t, T, pct, lr / div, lr, lr / final, 0.85, 0.95) for t in steps]
    np.testing.assert_allclose(_values(lr_sched, steps), [c[0] for c in course], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(_values(m_sched, steps), [c[1] for c in course], rtol=1e-6)
    # By hand for pct 0.3, T 100: at 85 % of the run the line is at lr - (lr - lr/1e4) * 55/70.
    if (pct, T) == (0.3, 100):
        assert float(lr_sched(85)) == pytest.approx(0.4 - (0.4 - 4e-5) * 55 / 70, rel=1e-5)
        assert float(m_sched(85)) == pytest.approx(0.85 + 0.10 * 55 / 70, rel=1e-6)


def test_onecycle_rise_of_29_percent_of_100_steps_is_29_steps():
    """onecycle_pct 0.29 of 100 steps rises for 29 steps, as eq. 38's pI = 29 says, although 0.29 * 100 is
    28.999999999999996 in floating point (truncating it would peak a step early). By hand, lr 1, lr / 25 = 0.04:
    step 28 is 0.04 + 0.96 * 28/29, step 29 the peak, step 30 one 71st of the way down to 1e-4; the momentum
    mirrors it between 0.95 and 0.85."""
    assert 0.29 * 100 < 29  # the floating-point product this test is about
    cfg = _cfg(name="momentum", lr=1.0, schedule="onecycle", onecycle_pct=0.29)
    lr_sched, m_sched = optim.schedule(cfg, 100), optim.momentum_schedule(cfg, 100)
    np.testing.assert_allclose(
        _values(lr_sched, [28, 29, 30]), [0.04 + 0.96 * 28 / 29, 1.0, 1.0 - (1.0 - 1e-4) / 71], rtol=1e-6
    )
    np.testing.assert_allclose(_values(m_sched, [28, 29, 30]), [0.95 - 0.1 * 28 / 29, 0.85, 0.85 + 0.1 / 71], rtol=1e-6)


def test_onecycle_linear_and_cosine_fall_differ_by_half_the_peak_at_85_percent():
    """At step 85 of 100 (rise 30 %) the line of eqs. 38-39 is at 1 - 55/70 = 0.214 of the peak, the cosine fall
    at (1 + cos(pi 55/70)) / 2 = 0.095: 'cos' is a documented option, not the course's form."""
    lin = optim.schedule(_cfg(name="sgd", lr=1.0, schedule="onecycle"), 100)
    cos = optim.schedule(_cfg(name="sgd", lr=1.0, schedule="onecycle", onecycle_anneal="cos"), 100)
    assert float(lin(85)) == pytest.approx(1 - (1 - 1e-4) * 55 / 70, rel=1e-5)
    assert float(cos(85)) == pytest.approx(1e-4 + (1 - 1e-4) * (1 + math.cos(math.pi * 55 / 70)) / 2, rel=1e-4)
    with pytest.raises(ConfigError, match=r"config\.optim\.onecycle_anneal"):
        optim.check(_cfg(name="sgd", lr=1.0, schedule="onecycle", onecycle_anneal="cosine"))


def test_onecycle_cosine_fall():
    """onecycle_anneal 'cos', T = 100: lr / 25 rising linearly to lr at step 30, then cosine down to lr / 1e4."""
    lr, T = 2.0, 100
    sched = optim.schedule(_cfg(name="sgd", lr=lr, schedule="onecycle", onecycle_anneal="cos"), T)
    steps = [0, 15, 29, 30, 65, 99, 100, 120]
    expected = [_onecycle(t, lr / 25, lr, lr / 1e4, 30, T) for t in steps]
    # atol: 1 + cos(pi 69 / 70) loses digits in float32 near the end of the cosine.
    np.testing.assert_allclose(_values(sched, steps), expected, rtol=1e-5, atol=1e-7)
    assert float(sched(0)) == pytest.approx(0.08)
    assert float(sched(15)) == pytest.approx(0.08 + (2.0 - 0.08) / 2)
    assert float(sched(65)) == pytest.approx((2.0 + 2e-4) / 2, rel=1e-5)


def test_onecycle_schedule_keys_and_warmup():
    """onecycle_pct 0.25, div_factor 10, final_div 100 after a 10-step warm-up: the cycle spans steps 10..50."""
    lr, W, T = 1.0, 10, 50
    cfg = _cfg(name="sgd", lr=lr, schedule="onecycle", onecycle_pct=0.25, div_factor=10, final_div=100, warmup_steps=W)
    cfg.onecycle_anneal = "cos"
    sched = optim.schedule(cfg, T)
    steps = [0, 5, 10, 15, 19, 20, 35, 49, 50]
    expected = [lr * t / W if t < W else _onecycle(t - W, 0.1, 1.0, 0.01, 10, T - W) for t in steps]
    np.testing.assert_allclose(_values(sched, steps), expected, rtol=1e-5, atol=1e-8)


def test_onecycle_momentum_schedule():
    """One-cycle momentum: 0.95 falling linearly to 0.85 while the lr rises, back to 0.95 along the cosine."""
    T = 100
    for name in ("momentum", "nesterov", "adam"):
        sched = optim.momentum_schedule(_cfg(name=name, lr=1.0, schedule="onecycle", onecycle_anneal="cos"), T)
        steps = [0, 15, 30, 65, 99, 100]
        expected = [_onecycle(t, 0.95, 0.85, 0.95, 30, T) for t in steps]
        np.testing.assert_allclose(_values(sched, steps), expected, rtol=1e-6)
        assert float(sched(15)) == pytest.approx(0.90)
        assert float(sched(65)) == pytest.approx(0.90)
    cfg = _cfg(name="momentum", lr=1.0, schedule="onecycle", momentum_max=0.9, momentum_min=0.5, warmup_steps=10)
    sched = optim.momentum_schedule(cfg, 110)
    expected = [0.9, 0.9, 0.9, 0.5, 0.9]
    np.testing.assert_allclose(_values(sched, [0, 9, 10, 40, 110]), expected, rtol=1e-6)


def test_momentum_schedule_constant_otherwise():
    """Not one-cycle: momentum / b1 at every step (defaults 0.9); optimizers without momentum give 0."""
    assert _values(optim.momentum_schedule(_cfg(name="momentum", lr=1.0, momentum=0.8), 10), [0, 9]) == [0.8, 0.8]
    assert _values(optim.momentum_schedule(_cfg(name="nesterov", lr=1.0, schedule="cosine"), 10), [3]) == [0.9]
    assert _values(optim.momentum_schedule(_cfg(name="adam", lr=1.0, b1=0.7), 10), [3]) == [0.7]
    for name in ("sgd", "adagrad", "rmsprop"):
        assert _values(optim.momentum_schedule(_cfg(name=name, lr=1.0, schedule="onecycle"), 10), [0, 5]) == [0, 0]


def test_cosine_restarts_schedule_and_cycle_ends():
    """cosine_restarts, 3 cycles of 10 steps: a + (1 - a)(1 + cos(pi (t mod 10) / 10)) / 2, restarting at 10, 20."""
    lr, a, T = 1.0, 0.1, 30
    cfg = _cfg(name="sgd", lr=lr, schedule="cosine_restarts", cycles=3, end_lr_factor=a)
    sched = optim.schedule(cfg, T)
    steps = [0, 5, 9, 10, 15, 19, 20, 25, 29, 30, 40]
    expected = [
        lr * (a + (1 - a) * (1 + math.cos(math.pi * (min(t, T) - 10 * min(t // 10, 2)) / 10)) / 2) for t in steps
    ]
    np.testing.assert_allclose(_values(sched, steps), expected, rtol=1e-5)
    assert float(sched(5)) == pytest.approx(0.55, rel=1e-5)
    assert float(sched(10)) == pytest.approx(1.0)
    assert optim.cycle_ends(cfg, T) == [10, 20, 30]


def test_cosine_restarts_uneven_with_warmup():
    """32 steps after a 4-step warm-up in 3 cycles: cycles of 10, 11, 11 steps ending at loop steps 14, 25, 36."""
    cfg = _cfg(name="sgd", lr=1.0, schedule="cosine_restarts", cycles=3, warmup_steps=4)
    assert optim.cycle_ends(cfg, 36) == [14, 25, 36]
    sched = optim.schedule(cfg, 36)
    steps = [2, 4, 9, 14, 20, 25, 30]
    bounds = [(4, 10), (14, 11), (25, 11)]

    def expected(t):
        if t < 4:
            return t / 4
        start, length = [b for b in bounds if b[0] <= t][-1]
        return (1 + math.cos(math.pi * (t - start) / length)) / 2

    np.testing.assert_allclose(_values(sched, steps), [expected(t) for t in steps], rtol=1e-5, atol=1e-7)
    # Any other schedule is one cycle ending at the last step.
    assert optim.cycle_ends(_cfg(name="sgd", lr=1.0, schedule="cosine", cycles=3), 36) == [36]
    with pytest.raises(ConfigError, match=r"config\.optim\.cycles"):
        optim.schedule(_cfg(name="sgd", lr=1.0, schedule="cosine_restarts", cycles=0), 36)


@pytest.mark.parametrize("name", ["constant", "cosine", "linear", "onecycle", "cosine_restarts"])
def test_warmup_in_front_of_every_schedule(name):
    """Warm-up W: lr t / W for t < W, then the schedule built for T - W steps, shifted by W."""
    lr, W, T = 0.6, 8, 48
    cfg = _cfg(name="sgd", lr=lr, schedule=name, cycles=2, end_lr_factor=0.1)
    plain = optim.schedule(cfg, T - W)
    cfg.warmup_steps = W
    warm = optim.schedule(cfg, T)
    np.testing.assert_allclose(_values(warm, range(W)), [lr * t / W for t in range(W)], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(_values(warm, range(W, T + 1, 5)), _values(plain, range(0, T - W + 1, 5)), rtol=1e-6)


def test_unknown_schedule_raises():
    """An unknown schedule name raises ConfigError naming it and config.optim.schedule."""
    with pytest.raises(ConfigError, match=r"'exp'.*config\.optim\.schedule"):
        optim.schedule(_cfg(name="sgd", lr=0.1, schedule="exp"), 10)
    with pytest.raises(ConfigError, match=r"'exp'.*config\.optim\.schedule"):
        optim.make(_cfg(name="sgd", lr=0.1, schedule="exp"), 10)


def test_unknown_optimizer_raises():
    """An unknown optimizer name raises ConfigError naming it and listing the valid ones."""
    with pytest.raises(ConfigError, match=r"'lbfgs'.*config\.optim\.name") as info:
        optim.make(_cfg(name="lbfgs", lr=0.1), 10)
    for name in optim.OPTIMIZERS:
        assert name in str(info.value)


def test_unknown_decay_mask_raises():
    """decay_mask other than 'kernels' / 'all' raises ConfigError naming config.optim.decay_mask."""
    with pytest.raises(ConfigError, match=r"'bias'.*config\.optim\.decay_mask"):
        optim.make(_cfg(name="sgd", lr=0.1, weight_decay=0.1, decay_mask="bias"), 10)


# f(theta) = 1/2 theta^T A theta - b^T theta with a small SPD A: grad = A theta - b, minimum A^-1 b = [0.6, -0.8].
A = np.array([[3.0, 1.0], [1.0, 2.0]])
B = np.array([1.0, -1.0])
THETA0 = np.array([1.0, -1.5])


def _grad(theta):
    return A @ theta - B


def _loss(theta):
    return 0.5 * theta @ jnp.asarray(A, jnp.float32) @ theta - jnp.asarray(B, jnp.float32) @ theta


def _run(cfg, steps, params=THETA0, loss=_loss, total_steps=100):
    """Runs make(cfg) on loss from params for `steps` steps; returns the params after each step (float64 numpy)."""
    tx = optim.make(cfg, total_steps)
    params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params)
    state = tx.init(params)
    out = []
    for _ in range(steps):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, updates)
        out.append(jax.tree.map(lambda p: np.asarray(p, np.float64), params))
    return out


def test_sgd_three_steps():
    """SGD, theta -= lr g: same iterates as the course. First step: [1, -1.5] - 0.1 [0.5, -1] = [0.95, -1.4]."""
    lr = 0.1
    got = _run(_cfg(name="sgd", lr=lr), 3)
    np.testing.assert_allclose(got[0], [0.95, -1.4], rtol=1e-6)
    theta = THETA0
    for t in range(3):
        theta = theta - lr * _grad(theta)
        np.testing.assert_allclose(got[t], theta, rtol=1e-5)


def test_momentum_three_steps():
    """Course's velocity form v = m v - lr g, theta += v. Same iterates: optax keeps u = g + m u, theta -= lr u,
    and with a constant lr v = -lr u."""
    lr, m = 0.1, 0.9
    got = _run(_cfg(name="momentum", lr=lr, momentum=m), 3)
    theta, v = THETA0, np.zeros(2)
    for t in range(3):
        v = m * v - lr * _grad(theta)
        theta = theta + v
        np.testing.assert_allclose(got[t], theta, rtol=1e-5)


def test_momentum_with_changing_lr_is_optax_form():
    """Documented difference: with a changing lr the code follows optax (u = g + m u, theta -= lr_t u: every past
    gradient takes today's lr), not the course's v = m v - lr_t g (each gradient keeps its own step's lr)."""
    lr, m = 0.3, 0.9
    got = _run(_cfg(name="momentum", lr=lr, momentum=m, schedule="linear"), 3, total_steps=3)
    theta, u = THETA0, np.zeros(2)
    course, v = THETA0, np.zeros(2)
    for t in range(3):
        lr_t = lr * (1 - t / 3)
        u = _grad(theta) + m * u
        theta = theta - lr_t * u
        v = m * v - lr_t * _grad(course)
        course = course + v
        np.testing.assert_allclose(got[t], theta, rtol=1e-5)
    assert not np.allclose(got[-1], course, rtol=1e-3)


def test_nesterov_three_steps():
    """Course's Nesterov: v = m v - lr grad(theta + m v), theta += v. Documented difference: optax uses the
    reformulation of Sutskever et al. (u = g + m u, step -lr (g + m u), gradient at its own iterate), whose iterates
    are the course's look-ahead points theta + m v, not theta."""
    lr, m = 0.1, 0.5
    got = _run(_cfg(name="nesterov", lr=lr, momentum=m), 3)
    theta, v = THETA0, np.zeros(2)
    for t in range(3):
        v = m * v - lr * _grad(theta + m * v)
        theta = theta + v
        np.testing.assert_allclose(got[t], theta + m * v, rtol=1e-5)
        assert not np.allclose(got[t], theta, rtol=1e-3)


def test_adagrad_three_steps():
    """Course's AdaGrad: G += g^2 from G = 0, theta -= lr g / (sqrt(G) + eps). Same iterates for a small eps
    (optax puts eps inside the square root, see the next test); initial_accumulator defaults to 0 as in the course."""
    lr, eps = 0.5, 1e-10
    got = _run(_cfg(name="adagrad", lr=lr, eps=eps), 3)
    theta, G = THETA0, np.zeros(2)
    for t in range(3):
        g = _grad(theta)
        G = G + g**2
        theta = theta - lr * g / (np.sqrt(G) + eps)
        np.testing.assert_allclose(got[t], theta, rtol=1e-5)
    # The first step is lr * sign(g): g / sqrt(g^2).
    np.testing.assert_allclose(got[0], THETA0 - lr * np.sign(_grad(THETA0)), rtol=1e-6)


def test_adagrad_eps_inside_sqrt_and_initial_accumulator():
    """Documented difference: optax.scale_by_rss divides by sqrt(G0 + sum g^2 + eps), eps inside the root, where
    the course divides by sqrt(sum g^2) + eps; initial_accumulator sets G0 (optax.adagrad's own default is 0.1)."""
    lr, eps, g0 = 0.5, 0.25, 0.1
    got = _run(_cfg(name="adagrad", lr=lr, eps=eps, initial_accumulator=g0), 3)
    theta, G, course, Gc = THETA0, np.full(2, g0), THETA0, np.zeros(2)
    for t in range(3):
        g = _grad(theta)
        G = G + g**2
        theta = theta - lr * g / np.sqrt(G + eps)
        gc = _grad(course)
        Gc = Gc + gc**2
        course = course - lr * gc / (np.sqrt(Gc) + eps)
        np.testing.assert_allclose(got[t], theta, rtol=1e-5)
    assert not np.allclose(got[-1], course, rtol=1e-3)


@pytest.mark.parametrize("decay", [None, 0.5])
def test_rmsprop_three_steps(decay):
    """Course's RMSprop: s = d s + (1 - d) g^2 from s = 0, theta -= lr g / (sqrt(s) + eps), no bias correction.
    Same iterates, eps included: the code asks optax.scale_by_rms for eps_in_sqrt=False (optax.rmsprop's default
    puts it inside). decay defaults to 0.9."""
    lr, eps = 0.01, 0.05
    cfg = _cfg(name="rmsprop", lr=lr, eps=eps) if decay is None else _cfg(name="rmsprop", lr=lr, eps=eps, decay=decay)
    d = 0.9 if decay is None else decay
    got = _run(cfg, 3)
    theta, s = THETA0, np.zeros(2)
    for t in range(3):
        g = _grad(theta)
        s = d * s + (1 - d) * g**2
        theta = theta - lr * g / (np.sqrt(s) + eps)
        np.testing.assert_allclose(got[t], theta, rtol=1e-5)


@pytest.mark.parametrize("hyper", [None, (0.8, 0.9, 1e-3)])
def test_adam_three_steps(hyper):
    """Course's Adam with bias correction (defaults b1 0.9, b2 0.999, eps 1e-8 outside the root): m, v moments,
    theta -= lr m_hat / (sqrt(v_hat) + eps). Same iterates as optax.scale_by_adam."""
    lr = 0.01
    if hyper is None:
        cfg, (b1, b2, eps) = _cfg(name="adam", lr=lr), (0.9, 0.999, 1e-8)
    else:
        (b1, b2, eps) = hyper
        cfg = _cfg(name="adam", lr=lr, b1=b1, b2=b2, eps=eps)
    got = _run(cfg, 3)
    theta, m, v = THETA0, np.zeros(2), np.zeros(2)
    for t in range(1, 4):
        g = _grad(theta)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
        np.testing.assert_allclose(got[t - 1], theta, rtol=1e-5)


def test_adam_first_step_is_lr_times_sign():
    """With the default tiny eps the first Adam step is lr * sign(g) for every coordinate."""
    (theta,) = _run(_cfg(name="adam", lr=0.01), 1)
    np.testing.assert_allclose(theta, THETA0 - 0.01 * np.sign(_grad(THETA0)), rtol=1e-5)


def test_onecycle_drives_momentum_and_lr():
    """One-cycle momentum over T = 10 (rise of 3 steps): step t uses lr_t and m_t from the two schedules, in
    optax's form u = g + m_t u, theta -= lr_t u (as in test_momentum_with_changing_lr_is_optax_form)."""
    lr, T = 0.2, 10
    got = _run(_cfg(name="momentum", lr=lr, schedule="onecycle"), 4, total_steps=T)
    theta, u = THETA0, np.zeros(2)
    for t in range(4):
        lr_t, m_t = _onecycle(t, lr / 25, lr, lr / 1e4, 3, T), _onecycle(t, 0.95, 0.85, 0.95, 3, T)
        u = _grad(theta) + m_t * u
        theta = theta - lr_t * u
        np.testing.assert_allclose(got[t], theta, rtol=1e-5)


def test_onecycle_adam_b1():
    """One-cycle Adam: b1_t from the momentum schedule. Documented difference: optax's bias correction divides
    by 1 - b1_t^t with today's b1_t, not by 1 - prod(b1_1..b1_t)."""
    lr, T, b2, eps = 0.1, 10, 0.999, 1e-8
    got = _run(_cfg(name="adam", lr=lr, schedule="onecycle"), 3, total_steps=T)
    theta, m, v = THETA0, np.zeros(2), np.zeros(2)
    for t in range(3):
        lr_t, b1 = _onecycle(t, lr / 25, lr, lr / 1e4, 3, T), _onecycle(t, 0.95, 0.85, 0.95, 3, T)
        g = _grad(theta)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        theta = theta - lr_t * (m / (1 - b1 ** (t + 1))) / (np.sqrt(v / (1 - b2 ** (t + 1))) + eps)
        np.testing.assert_allclose(got[t], theta, rtol=1e-5)


def test_schedule_drives_updates():
    """make() scales step t by the schedule at t: linear lr 0.1 -> 0 over 2 steps gives lr 0.1 then 0.05."""
    got = _run(_cfg(name="sgd", lr=0.1, schedule="linear"), 2, total_steps=2)
    theta1 = THETA0 - 0.1 * _grad(THETA0)
    theta2 = theta1 - 0.05 * _grad(theta1)
    np.testing.assert_allclose(got[0], theta1, rtol=1e-6)
    np.testing.assert_allclose(got[1], theta2, rtol=1e-6)


def test_make_accepts_steps_per_epoch():
    """make() passes steps_per_epoch to the schedule: milestone epoch 1 at 2 steps per epoch drops lr at step 2."""
    cfg = _cfg(name="sgd", lr=0.1, schedule="step", milestones_epochs=(1,))
    got = _run_spe(cfg, 3, steps_per_epoch=2)
    theta = THETA0
    for t, lr_t in enumerate([0.1, 0.1, 0.01]):
        theta = theta - lr_t * _grad(theta)
        np.testing.assert_allclose(got[t], theta, rtol=1e-5)


def _run_spe(cfg, steps, steps_per_epoch):
    tx = optim.make(cfg, 100, steps_per_epoch)
    params = jnp.asarray(THETA0, jnp.float32)
    state, out = tx.init(params), []
    for _ in range(steps):
        updates, state = tx.update(jax.grad(_loss)(params), state, params)
        params = optax.apply_updates(params, updates)
        out.append(np.asarray(params, np.float64))
    return out


# The quadratic over a (2, 1) kernel, so the kernel mask ('kernels', ndim > 1) includes it.
KERNEL0 = {"kernel": THETA0.reshape(2, 1)}


def _kernel_loss(params):
    return _loss(params["kernel"][:, 0])


def test_l2_equals_weight_decay_for_sgd():
    """For SGD, coupled l2 = lam and decoupled weight_decay = lam both give theta (1 - lr lam) - lr g, 3 steps."""
    lr, lam = 0.1, 0.5
    by_l2 = _run(_cfg(name="sgd", lr=lr, l2=lam), 3, KERNEL0, _kernel_loss)
    by_wd = _run(_cfg(name="sgd", lr=lr, weight_decay=lam), 3, KERNEL0, _kernel_loss)
    theta = THETA0
    for t in range(3):
        theta = theta * (1 - lr * lam) - lr * _grad(theta)
        np.testing.assert_allclose(by_l2[t]["kernel"][:, 0], theta, rtol=1e-5)
        np.testing.assert_allclose(by_wd[t]["kernel"][:, 0], theta, rtol=1e-5)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_l2_is_the_loss_term(name):
    """l2 = lam is the optimizer run on loss + lam / 2 ||W||^2 (gradient by jax.grad), for SGD and for Adam."""
    lam = 0.5
    by_key = _run(_cfg(name=name, lr=0.1, l2=lam), 3, KERNEL0, _kernel_loss)

    def penalized(params):
        return _kernel_loss(params) + lam / 2 * jnp.sum(params["kernel"] ** 2)

    by_loss = _run(_cfg(name=name, lr=0.1), 3, KERNEL0, penalized)
    for a, b in zip(by_key, by_loss, strict=True):
        np.testing.assert_allclose(a["kernel"], b["kernel"], rtol=1e-5)


def test_adam_l2_differs_from_weight_decay():
    """For Adam, coupled l2 goes through the 1 / sqrt(v) scaling and decoupled weight decay does not (AdamW)."""
    by_l2 = _run(_cfg(name="adam", lr=0.1, l2=0.5), 3, KERNEL0, _kernel_loss)
    by_wd = _run(_cfg(name="adam", lr=0.1, weight_decay=0.5), 3, KERNEL0, _kernel_loss)
    assert not np.allclose(by_l2[-1]["kernel"], by_wd[-1]["kernel"], rtol=1e-3)


def test_l1_hand_example():
    """SGD with l1 = 0.5, lr 0.1: theta - 0.1 (g + 0.5 sign(theta)); sign(0) = 0 leaves a zero weight to g alone."""
    tx = optim.make(_cfg(name="sgd", lr=0.1, l1=0.5), 10)
    params = {"kernel": jnp.array([[1.0, -2.0], [0.0, 3.0]])}
    grads = {"kernel": jnp.array([[0.5, 0.0], [1.0, -1.0]])}
    updates, _ = tx.update(grads, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    # [[1 - 0.1 (0.5 + 0.5), -2 - 0.1 (0 - 0.5)], [0 - 0.1 (1 + 0), 3 - 0.1 (-1 + 0.5)]]
    np.testing.assert_allclose(new["kernel"], [[0.9, -1.95], [-0.1, 3.05]], rtol=1e-6)


@pytest.mark.parametrize("key", ["l1", "l2", "weight_decay"])
@pytest.mark.parametrize("mask", ["kernels", "all"])
def test_decay_mask(key, mask):
    """Zero gradient, SGD lr 0.1, lam 0.5: the kernel always moves (l1: theta - 0.05 sign(theta); l2 and
    weight_decay: 0.95 theta); the 1-D bias stays with decay_mask 'kernels' and moves the same way with 'all'."""
    tx = optim.make(_cfg(name="sgd", lr=0.1, decay_mask=mask, **{key: 0.5}), 10)
    params = {"kernel": jnp.array([[1.0, -2.0], [0.5, 3.0]]), "bias": jnp.array([1.0, -2.0])}
    updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
    new = optax.apply_updates(params, updates)
    if key == "l1":
        kernel, bias = [[0.95, -1.95], [0.45, 2.95]], [0.95, -1.95]
    else:
        kernel, bias = [[0.95, -1.9], [0.475, 2.85]], [0.95, -1.9]
    np.testing.assert_allclose(new["kernel"], kernel, rtol=1e-6)
    np.testing.assert_allclose(new["bias"], bias if mask == "all" else [1.0, -2.0], rtol=1e-6)


def test_weight_decay_kernels_only():
    """SGD with weight decay: kernel -> theta (1 - lr wd) - lr g; the 1-D bias -> theta - lr g (no decay)."""
    lr, wd = 0.1, 0.5
    tx = optim.make(_cfg(name="sgd", lr=lr, weight_decay=wd), 100)
    params = {"kernel": jnp.array([[1.0, 2.0], [-3.0, 4.0]]), "bias": jnp.array([1.0, -2.0])}
    grads = {"kernel": jnp.array([[0.5, 0.0], [1.0, -1.0]]), "bias": jnp.array([0.25, 1.0])}
    updates, _ = tx.update(grads, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    # kernel: theta * 0.95 - 0.1 * g
    np.testing.assert_allclose(new["kernel"], [[0.9, 1.9], [-2.95, 3.9]], rtol=1e-6)
    # bias: theta - 0.1 * g, no decay
    np.testing.assert_allclose(new["bias"], [0.975, -2.1], rtol=1e-6)


def test_grad_clip_norm():
    """grad_clip_norm scales the gradient to that global norm: g = [3, 4] (norm 5) clipped to 1 is [0.6, 0.8]."""
    tx = optim.make(_cfg(name="sgd", lr=1.0, grad_clip_norm=1.0), 10)
    params = jnp.zeros(2)
    updates, _ = tx.update(jnp.array([3.0, 4.0]), tx.init(params), params)
    np.testing.assert_allclose(updates, [-0.6, -0.8], rtol=1e-6)
    small, _ = tx.update(jnp.array([0.3, 0.4]), tx.init(params), params)
    np.testing.assert_allclose(small, [-0.3, -0.4], rtol=1e-6)


def test_grad_clip_global_norm_over_leaves():
    """The norm is over all leaves together: kernel [[1, 2], [2, 0]] and bias [4] have norm 5; clipping to 2.5
    halves both."""
    tx = optim.make(_cfg(name="sgd", lr=1.0, grad_clip_norm=2.5), 10)
    grads = {"kernel": jnp.array([[1.0, 2.0], [2.0, 0.0]]), "bias": jnp.array([4.0])}
    params = jax.tree.map(jnp.zeros_like, grads)
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(updates["kernel"], [[-0.5, -1.0], [-1.0, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(updates["bias"], [-2.0], rtol=1e-6)


def test_newton_step_reaches_quadratic_minimum():
    """One Newton step from anywhere lands on A^-1 b = [[2, -1], [-1, 3]] / 5 @ [1, -1] = [0.6, -0.8]; the params
    are a pytree {'a': scalar, 'b': (1,)} that newton_step flattens and rebuilds."""

    def loss(p):
        return _loss(jnp.concatenate([p["a"][None], p["b"]]))

    new = optim.newton_step(loss, {"a": jnp.array(1.0), "b": jnp.array([-1.5])})
    assert new["a"].shape == () and new["b"].shape == (1,)
    np.testing.assert_allclose(float(new["a"]), 0.6, atol=1e-5)
    np.testing.assert_allclose(np.asarray(new["b"]), [-0.8], atol=1e-5)
    half = optim.newton_step(loss, {"a": jnp.array(1.0), "b": jnp.array([-1.5])}, lr=0.5)
    np.testing.assert_allclose(float(half["a"]), (1.0 + 0.6) / 2, atol=1e-5)


@pytest.mark.parametrize(
    "f, x0, expected",
    [
        # f = x^4 + x^2: f' = 4x^3 + 2x = 6, f'' = 12x^2 + 2 = 14 at 1, so x1 = 1 - 6/14 = 4/7.
        (lambda x: x**4 + x**2, 1.0, 1.0 - 6.0 / 14.0),
        # f = exp(x) - 2x: f' = exp(x) - 2, f'' = exp(x), so x1 = x0 - 1 + 2 exp(-x0).
        (lambda x: jnp.exp(x) - 2 * x, 0.5, 0.5 - 1.0 + 2.0 * math.exp(-0.5)),
    ],
)
def test_newton_step_one_dimensional(f, x0, expected):
    """On a 1-D non-quadratic f one step is x - f'(x) / f''(x), written out for each f."""
    x1 = optim.newton_step(lambda p: f(p[0]), jnp.array([x0]))
    np.testing.assert_allclose(float(x1[0]), expected, rtol=1e-6)


def test_plateau_scale_multiplies_updates():
    """scale_by_plateau multiplies the SGD step by the factor set in the state: -lr * 0.1 * g."""
    config = ml_collections.ConfigDict({"name": "sgd", "lr": 0.5, "plateau_factor": 0.1})
    tx = optim.make(config, total_steps=10)
    params = {"w": jnp.array([1.0, -2.0])}
    state = tx.init(params)
    assert optim.plateau_scale(state) == 1.0
    state = optim.set_plateau_scale(state, 0.1)
    updates, _ = tx.update({"w": jnp.array([2.0, 4.0])}, state, params)
    np.testing.assert_allclose(updates["w"], [-0.5 * 0.1 * 2.0, -0.5 * 0.1 * 4.0], rtol=1e-6)
    assert (
        optim.plateau_scale(optim.make(ml_collections.ConfigDict({"name": "sgd", "lr": 0.5}), 10).init(params)) == 1.0
    )


def test_newton_in_the_chain_reaches_the_quadratic_minimum():
    """optim.make(name='newton', damping 0) with value_fn: one step lands on A^-1 b of 1/2 x'Ax - b'x."""
    a = jnp.array([[3.0, 1.0], [1.0, 2.0]])
    b = jnp.array([1.0, -1.0])

    def f(p):
        return 0.5 * p["x"] @ a @ p["x"] - b @ p["x"]

    tx = optim.make(ml_collections.ConfigDict({"name": "newton", "lr": 1.0, "newton_damping": 0.0}), 10)
    params = {"x": jnp.array([5.0, -7.0])}
    updates, _ = tx.update(jax.grad(f)(params), tx.init(params), params, value_fn=f)
    np.testing.assert_allclose(optax.apply_updates(params, updates)["x"], np.linalg.solve(a, b), atol=1e-5)


def test_newton_damping_by_hand():
    """With damping d the step is (H + d I)^-1 g: for f = x^2 (H = 2), d = 2, g = 2x at x = 3: step 6 / 4."""
    tx = optim.make(ml_collections.ConfigDict({"name": "newton", "lr": 1.0, "newton_damping": 2.0}), 10)
    params = {"x": jnp.array([3.0])}
    updates, _ = tx.update({"x": jnp.array([6.0])}, tx.init(params), params, value_fn=lambda p: jnp.sum(p["x"] ** 2))
    np.testing.assert_allclose(updates["x"], [-1.5], rtol=1e-6)

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


def test_unknown_schedule_raises():
    """An unknown schedule name raises ConfigError naming it."""
    with pytest.raises(ConfigError, match="'step'"):
        optim.schedule(_cfg(name="sgd", lr=0.1, schedule="step"), 10)
    with pytest.raises(ConfigError, match="'step'"):
        optim.make(_cfg(name="sgd", lr=0.1, schedule="step"), 10)


def test_unknown_optimizer_raises():
    """An unknown optimizer name raises ConfigError naming it and listing the valid ones."""
    with pytest.raises(ConfigError, match="'rmsprop'") as info:
        optim.make(_cfg(name="rmsprop", lr=0.1), 10)
    for name in optim.OPTIMIZERS:
        assert name in str(info.value)


# f(theta) = 0.5 * sum(a * theta^2), so grad = a * theta.
A = np.array([1.0, 3.0, 0.5], np.float32)
THETA0 = np.array([1.0, -2.0, 4.0], np.float32)


def _grad(theta):
    return A * theta


def _run(cfg, steps, theta=THETA0, total_steps=100):
    tx = optim.make(cfg, total_steps)
    params = jnp.asarray(theta)
    state = tx.init(params)
    out = []
    for _ in range(steps):
        g = jax.grad(lambda p: 0.5 * jnp.sum(jnp.asarray(A) * p**2))(params)
        updates, state = tx.update(g, state, params)
        params = optax.apply_updates(params, updates)
        out.append(np.asarray(params))
    return out


def test_sgd_one_step():
    """One SGD update is -lr * g: theta = [1, -2, 4] - 0.1 * [1, -6, 2] = [0.9, -1.4, 3.8]."""
    (theta,) = _run(_cfg(name="sgd", lr=0.1), 1)
    np.testing.assert_allclose(theta, [0.9, -1.4, 3.8], rtol=1e-6)


def test_momentum_three_steps():
    """Heavy-ball momentum: v = g + m v, theta -= lr v, for 3 steps."""
    lr, m = 0.1, 0.9
    got = _run(_cfg(name="momentum", lr=lr, momentum=m), 3)
    theta, v = THETA0.astype(np.float64), np.zeros(3)
    for t in range(3):
        v = _grad(theta) + m * v
        theta = theta - lr * v
        np.testing.assert_allclose(got[t], theta, rtol=1e-5)


def test_momentum_default_coefficient_is_0_9():
    """Without config.momentum the momentum coefficient is 0.9."""
    a = _run(_cfg(name="momentum", lr=0.1), 3)
    b = _run(_cfg(name="momentum", lr=0.1, momentum=0.9), 3)
    np.testing.assert_allclose(a[-1], b[-1])


def test_nesterov_three_steps():
    """Nesterov: v = g + m v, theta -= lr (g + m v), for 3 steps."""
    lr, m = 0.1, 0.5
    got = _run(_cfg(name="nesterov", lr=lr, momentum=m), 3)
    theta, v = THETA0.astype(np.float64), np.zeros(3)
    for t in range(3):
        g = _grad(theta)
        v = g + m * v
        theta = theta - lr * (g + m * v)
        np.testing.assert_allclose(got[t], theta, rtol=1e-5)


def test_adam_three_steps():
    """Adam with bias correction: m, v moments, theta -= lr * m_hat / (sqrt(v_hat) + eps), for 3 steps."""
    lr, b1, b2, eps = 0.01, 0.8, 0.9, 1e-3
    got = _run(_cfg(name="adam", lr=lr, b1=b1, b2=b2, eps=eps), 3)
    theta, m, v = THETA0.astype(np.float64), np.zeros(3), np.zeros(3)
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


def test_schedule_drives_updates():
    """make() scales step t by the schedule at t: linear lr 0.1 -> 0 over 2 steps gives lr 0.1 then 0.05."""
    got = _run(_cfg(name="sgd", lr=0.1, schedule="linear"), 2, total_steps=2)
    theta1 = THETA0 - 0.1 * _grad(THETA0)
    theta2 = theta1 - 0.05 * _grad(theta1)
    np.testing.assert_allclose(got[0], theta1, rtol=1e-6)
    np.testing.assert_allclose(got[1], theta2, rtol=1e-6)


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

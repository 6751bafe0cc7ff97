"""Parameter averaging (EMA, Polyak, cycle) against the rules written out by hand, and in a run."""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments import digits_cnn
from mlcv import averaging
from mlcv.config import ConfigError
from mlcv.training import loop as train
from mlcv.training.checkpoint import read_state

THETAS = [np.array([1.0, -2.0]), np.array([3.0, 0.5]), np.array([-1.0, 4.0]), np.array([2.0, 2.0])]


def _run(cfg: dict, cycle_ends=()):
    config = ml_collections.ConfigDict(cfg)
    init = np.array([10.0, 10.0])
    avg = averaging.init(config, {"w": jnp.asarray(init)}, {})
    for t, theta in enumerate(THETAS, start=1):
        avg = averaging.update(config, avg, {"w": jnp.asarray(theta)}, {}, jnp.asarray(t), t in cycle_ends)
    return np.asarray(avg["params"]["w"]), int(avg["count"]), init


def test_ema_by_hand():
    """avg <- (1 - rho) theta + rho avg, from the initial parameters, rho = 0.9: the course's "Polyak averaging"
    of eq. 40 is this exponential moving average (``kind="ema"``); mlcv's ``polyak`` is the uniform mean below."""
    got, count, init = _run({"kind": "ema", "ema_decay": 0.9, "ema_warmup": False})
    expected = init
    for theta in THETAS:
        expected = 0.1 * theta + 0.9 * expected
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert count == 4


def test_ema_warmup_by_hand():
    """With warm-up rho_t = min(rho, (1 + t) / (10 + t)): 2/11, 3/12, 4/13, 5/14 for rho = 0.9."""
    got, _, init = _run({"kind": "ema", "ema_decay": 0.9, "ema_warmup": True})
    expected = init
    for t, theta in enumerate(THETAS, start=1):
        rho = min(0.9, (1 + t) / (10 + t))
        expected = (1 - rho) * theta + rho * expected
    np.testing.assert_allclose(got, expected, rtol=1e-6)


# Batch-norm statistics after each of four steps: running mean and variance of two channels.
STATS = [
    {"mean": np.array([0.5, -1.0]), "var": np.array([2.0, 0.25])},
    {"mean": np.array([1.5, 0.0]), "var": np.array([1.0, 0.5])},
    {"mean": np.array([-0.5, 2.0]), "var": np.array([4.0, 1.0])},
    {"mean": np.array([1.0, 3.0]), "var": np.array([0.5, 2.0])},
]


def _run_with_stats(cfg: dict) -> dict:
    config = ml_collections.ConfigDict(cfg)
    init_stats = {"bn": {"mean": jnp.zeros(2), "var": jnp.ones(2)}}
    avg = averaging.init(config, {"w": jnp.asarray([10.0, 10.0])}, init_stats)
    for t, (theta, stats) in enumerate(zip(THETAS, STATS, strict=True), start=1):
        new_stats = {"bn": {k: jnp.asarray(v) for k, v in stats.items()}}
        avg = averaging.update(config, avg, {"w": jnp.asarray(theta)}, new_stats, jnp.asarray(t))
    return {k: np.asarray(v) for k, v in avg["batch_stats"]["bn"].items()}


def test_ema_averages_batch_norm_statistics_by_hand():
    """The batch-norm running mean and variance follow the same EMA as the weights, rho = 0.9 from the initial
    statistics (mean 0, variance 1), not the raw statistics of the last step."""
    got = _run_with_stats({"kind": "ema", "ema_decay": 0.9, "ema_warmup": False})
    expected = {"mean": np.zeros(2), "var": np.ones(2)}
    for stats in STATS:
        expected = {k: 0.1 * stats[k] + 0.9 * expected[k] for k in expected}
    for k in ("mean", "var"):
        np.testing.assert_allclose(got[k], expected[k], rtol=1e-6, err_msg=k)
        assert not np.allclose(got[k], STATS[-1][k])  # the hand values are not the last step's


def test_polyak_averages_batch_norm_statistics_by_hand():
    """Polyak from step 2: the batch-norm statistics are the plain mean of steps 2-4's, like the weights."""
    got = _run_with_stats({"kind": "polyak", "start_step": 2})
    for k in ("mean", "var"):
        np.testing.assert_allclose(got[k], np.mean([s[k] for s in STATS[1:]], axis=0), rtol=1e-6, err_msg=k)


def test_polyak_is_the_mean_from_start_step():
    """Polyak averaging from step 2 is the plain mean of theta_2..theta_4."""
    got, count, _ = _run({"kind": "polyak", "start_step": 2})
    np.testing.assert_allclose(got, np.mean(THETAS[1:], axis=0), rtol=1e-6)
    assert count == 3


def test_cycle_average_of_cycle_ends():
    """(theta_cycle + n avg) / (n + 1) at steps 2 and 4 gives the mean of theta_2 and theta_4."""
    got, count, _ = _run({"kind": "cycle"}, cycle_ends=(2, 4))
    np.testing.assert_allclose(got, (THETAS[1] + THETAS[3]) / 2, rtol=1e-6)
    assert count == 2


def test_bad_averaging_config():
    """An unknown kind or a decay of 1 is refused, naming the key."""
    with pytest.raises(ConfigError, match="config.averaging.kind"):
        averaging.check(ml_collections.ConfigDict({"kind": "swa"}))
    with pytest.raises(ConfigError, match="ema_decay"):
        averaging.check(ml_collections.ConfigDict({"kind": "ema", "ema_decay": 1.0}))


def test_run_evaluates_average_beside_raw(tmp_path):
    """EMA with rho = 0 is the raw network: its metrics equal the raw ones; the average is checkpointed."""
    config = digits_cnn.get_config("runlocal")
    config.total_steps = 6
    config.eval_every_steps = 3
    config.tensorboard = False
    config.averaging.kind = "ema"
    config.averaging.ema_decay = 0.0
    config.averaging.ema_warmup = False
    summary = train.run(config, tmp_path / "ema")
    for split in ("validation", "test"):
        for k, v in summary[split].items():
            assert summary[f"{split}_avg"][k] == pytest.approx(v, abs=1e-6), (split, k)
    state = read_state(tmp_path / "ema" / "checkpoints" / "6")
    np.testing.assert_allclose(state["avg"]["params"]["head"]["kernel"], state["params"]["head"]["kernel"], atol=1e-7)
    assert int(state["avg"]["count"]) == 6

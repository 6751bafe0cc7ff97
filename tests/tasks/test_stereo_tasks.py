"""The stereo, flow and Monodepth tasks: their losses by hand, a disparity range wider than the image, whole runs."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlcv
from experiments import layers_flownet, planes_stereo
from mlcv import data, tasks
from mlcv.config import ConfigError
from mlcv.orchestration import sweep
from mlcv.tasks.base import StepContext

CONTEXT = StepContext(step=jnp.zeros((), jnp.int32))


def _task(config):
    return tasks.get(config.task)(config, data.meta(data.get(config.data.name)))


def test_disparity_loss_is_the_mean_l1_over_valid_pixels_at_every_scale():
    """At full resolution the loss is the mean |error| over valid pixels; a half-resolution prediction is scored
    against the 2x2 mean of the ground truth, halved (its own pixels); pixels next to invalid ones are left out."""
    task = _task(planes_stereo.get_config("model=gcnet,runlocal"))
    rng = np.random.default_rng(0)
    gt = rng.uniform(2, 20, (2, 8, 8)).astype(np.float32)
    valid = np.ones((2, 8, 8), bool)
    valid[0, :2, :2] = False  # one 2x2 block of the half-resolution map
    batch = {"disparity": gt, "disparity_mask": valid}
    pred = gt + 1.5
    assert float(task.losses({"disparity": pred}, batch, CONTEXT)["l1"]) == pytest.approx(1.5, rel=1e-6)
    half = gt.reshape(2, 4, 2, 4, 2).mean((2, 4)) / 2 + 0.25
    half[0, 0, 0] = 1e6  # the invalid block: never scored
    got = float(task.losses({"disparity": pred, "disparities": (half, pred)}, batch, CONTEXT)["l1"])
    assert got == pytest.approx(1.5 + 0.25, rel=1e-5)


def test_flow_loss_is_the_mean_end_point_error():
    task = _task(layers_flownet.get_config("runlocal"))
    flow = np.random.default_rng(1).normal(0, 3, (2, 8, 8, 2)).astype(np.float32)
    batch = {"flow": flow, "flow_mask": np.ones((2, 8, 8), bool)}
    got = task.losses({"flow": flow + np.array([3.0, 4.0], np.float32)}, batch, CONTEXT)["epe"]
    assert float(got) == pytest.approx(5.0, rel=1e-5)  # a (3, 4) error everywhere


def test_mccnn_pairs_hinge_and_the_classic_pipeline_on_a_known_volume():
    """Each pixel's positive is the truth and its negative 2-8 px off; scores that ignore the disparity cost the
    margin at every pixel, scores peaked at the truth cost nothing; a volume peaked at the truth gives it back
    through WTA, the left-right check and the parabola (its peak is symmetric)."""
    task = _task(planes_stereo.get_config("model=mccnn_fast,runlocal"))
    d_true = 5
    shape = (2, 6, 16)
    batch = {"disparity": np.full(shape, float(d_true), np.float32), "disparity_mask": np.ones(shape, bool)}
    pos, neg, ok = (np.asarray(a) for a in task._pairs(batch, jax.random.PRNGKey(0)))
    assert (pos == d_true).all() and 2 <= np.abs(neg - pos).min() and np.abs(neg - pos).max() <= 8
    x = np.arange(16)
    assert not (ok & (x < np.maximum(pos, neg))).any()  # both partners inside the right view
    # Away from the left border a pixel is dropped only when its negative fell below 0 (clipped to 0).
    assert (neg[~ok & (x >= 13)] == 0).all() and ok[..., 13:].mean() > 0.3
    flat = {"pair_scores": jnp.zeros((*shape, 2)), "pair_ok": jnp.asarray(ok, jnp.float32)}
    assert float(task.losses(flat, batch, CONTEXT)["hinge"]) == pytest.approx(0.2)
    pairs = np.stack([pos, neg], -1)
    peaked = {"pair_scores": -jnp.abs(pairs - d_true).astype(jnp.float32), "pair_ok": flat["pair_ok"]}
    assert float(task.losses(peaked, batch, CONTEXT)["hinge"]) == 0.0
    volume = {"scores": -jnp.abs(jnp.arange(32.0) - d_true) * jnp.ones((*shape, 1))}
    disparity = np.asarray(task.predict(volume, batch)["disparity"])
    np.testing.assert_allclose(disparity[:, :, d_true:], d_true, atol=1e-5)  # x - d inside the right view


def test_mccnn_aggregation_and_sgm_recover_the_truth_from_a_noisy_volume():
    """Independent noise on a volume peaked at the truth breaks the WTA at some pixels; a 5 x 5 box mean of each
    disparity's scores (config.mccnn.aggregate_radius=2) averages it away."""
    config = planes_stereo.get_config("model=mccnn_fast,runlocal")
    d_true, shape = 5, (1, 24, 40)
    peak = -0.1 * np.abs(np.arange(32.0) - d_true)
    noisy = peak + np.random.default_rng(0).normal(0, 0.3, (*shape, 32))
    batch = {"disparity": np.zeros(shape, np.float32)}
    errors = []
    for radius, p1 in ((0, 0.0), (2, 0.0), (0, 1.0)):
        config.mccnn.update(aggregate_radius=radius, sgm_p1=p1, sgm_p2=4 * p1, lr_threshold=-1.0, fill=False)
        disparity = np.asarray(_task(config).predict({"scores": jnp.asarray(noisy, jnp.float32)}, batch)["disparity"])
        errors.append(np.mean(np.abs(disparity[:, 2:-2, 8:-2] - d_true) > 1))
    # Semi-global matching (config.mccnn.sgm_p1 > 0) smooths it too (tests/ops/test_sgm.py checks its numbers).
    assert errors[0] > 0.3 and errors[1] < 0.02 and errors[2] < errors[0] / 2


def test_a_disparity_range_wider_than_the_image_names_the_key():
    config = sweep.apply(planes_stereo.get_config("model=gcnet"), {"model.max_disparity": 128})
    with pytest.raises(ConfigError, match=r"config\.model\.max_disparity=128.*128 px"):
        _task(config)


@pytest.mark.parametrize(
    "config_arg",
    [
        "planes_stereo:model=gcnet,runlocal",
        "planes_stereo:model=monodepth,runlocal",
        "planes_stereo:model=mccnn_fast,runlocal",
        "layers_flownet:runlocal",
    ],
)
def test_runs_write_the_stereo_and_flow_metrics(tmp_path, config_arg):
    """The whole flow: pairs through the pipeline, the task's loss, the evaluator's figures and plots."""
    module, arg = config_arg.split(":")
    config = {"planes_stereo": planes_stereo, "layers_flownet": layers_flownet}[module].get_config(arg)
    summary = mlcv.run(config, tmp_path / "run")
    test = summary["test"]
    if config.task == "flow":
        assert np.isfinite(test["flow_epe"]) and (tmp_path / "run" / "plots" / "flow_test.png").is_file()
        return
    for name in ("bad1", "bad2", "bad4", "epe", "density", "bad2_noc", "epe_noc"):
        assert np.isfinite(test[name]), name
    assert test["bad1"] >= test["bad2"] >= test["bad4"]
    assert (tmp_path / "run" / "plots" / "depth_test.png").is_file()
    if config.task == "monodepth":  # trained without ground truth: the loss terms of eq. 78 are logged
        records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
        assert any("train/appearance" in r and "train/left_right" in r for r in records)

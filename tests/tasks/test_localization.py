"""The localization head (eq. 48): box parametrisation and loss against hand calculations."""

from __future__ import annotations

import math

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from mlcv.config import ConfigError
from mlcv.data import registry
from mlcv.tasks import localization as loc


def test_centre_size_by_hand():
    # A box rows 8..24, columns 16..48 of a 64x64 image: centre (16, 32), size 16 x 32.
    code = loc.to_centre_size(jnp.array([[8.0, 16.0, 24.0, 48.0]]), 64, 64)
    np.testing.assert_allclose(code, [[0.25, 0.5, 0.25, 0.5]])
    np.testing.assert_allclose(loc.from_centre_size(code, 64, 64), [[8.0, 16.0, 24.0, 48.0]])


def _task(box_loss: str, weight: float = 2.0, beta: float = 1.0) -> loc.LocalizationTask:
    pp = "keep('image', 'boxes', 'box_labels')|pad_boxes(1)|normalize"
    config = ml_collections.ConfigDict(
        {
            "data": {"name": "digit_scenes_single", "pp_train": pp, "pp_eval": pp},
            "model": {"name": "cnn", "features": (4,), "dense": 8},
            "detection": {"box_loss": box_loss, "box_weight": weight, "box_beta": beta},
        }
    )
    return loc.LocalizationTask(config, registry.meta(registry.get("digit_scenes_single")))


@pytest.mark.parametrize("box_loss,beta", [("l2", 1.0), ("smooth_l1", 1.0), ("smooth_l1", 0.05)])
def test_loss_by_hand(box_loss, beta):
    task = _task(box_loss, beta=beta)
    batch = {
        "image": jnp.zeros((1, 64, 64, 3)),
        "boxes": jnp.array([[[8.0, 16.0, 24.0, 48.0]]]),
        "box_labels": jnp.array([[2]]),
        "box_mask": jnp.ones((1, 1)),
    }
    # Uniform class scores: CE = log 10. Box code off by (0.1, 0, 0, -2) from (0.25, 0.5, 0.25, 0.5).
    outputs = jnp.concatenate([jnp.zeros((1, 10)), jnp.array([[0.35, 0.5, 0.25, -1.5]])], -1)
    losses = task.losses(outputs, batch, None)
    assert float(losses["softmax_xent"]) == pytest.approx(math.log(10), rel=1e-6)
    # l2: 0.5 * (0.01 + 4) = 2.005; smooth L1 (beta 1): 0.5 * 0.01 + (2 - 0.5) = 1.505; beta 0.05: both
    # errors linear, (0.1 - 0.025) + (2 - 0.025) = 2.05; times lambda = 2.
    want = 2 * {("l2", 1.0): 2.005, ("smooth_l1", 1.0): 1.505, ("smooth_l1", 0.05): 2.05}[box_loss, beta]
    assert float(losses["box"]) == pytest.approx(want, rel=1e-5)
    pred = task.predict(outputs, batch)
    assert pred["det_boxes"].shape == (1, 1, 4)
    assert float(pred["det_scores"][0, 0]) == pytest.approx(0.1)
    assert float(pred["loss"][0]) == pytest.approx(math.log(10) + want, rel=1e-5)


def test_bad_config_names_the_key():
    with pytest.raises(ConfigError, match="config.detection.box_loss='l1'"):
        _task("l1")
    with pytest.raises(ConfigError, match="config.detection.box_beta=-1.0"):
        _task("smooth_l1", beta=-1.0)

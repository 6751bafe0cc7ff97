"""A stereo run on a pair of another size: downscaling, padding, the way back to full resolution, overrides."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import mlcv
from experiments import planes_stereo
from mlcv import data
from mlcv.config import ConfigError
from mlcv.data import ops as ops_lib
from mlcv.orchestration import stereo_transfer
from mlcv.training import runs


def test_block_mean_by_hand():
    x = np.arange(20, dtype=np.float32).reshape(4, 5, 1)
    got = stereo_transfer.block_mean(x, 2)
    np.testing.assert_allclose(got[..., 0], [[(0 + 1 + 5 + 6) / 4, (2 + 3 + 7 + 8) / 4], [13.0, 15.0]])


def _fake_run(disparity_of, seen):
    """A run whose network returns ``disparity_of(batch)``; the batches it was given land in ``seen``."""
    config = planes_stereo.get_config("model=dispnet,runlocal")

    def predict(batch):
        seen.append(batch)
        return {"disparity": disparity_of(batch)}

    return SimpleNamespace(config=config, task=SimpleNamespace(input_keys=("image", "image_right")), predict=predict)


def test_half_resolution_prediction_comes_back_doubled_padded_and_preprocessed_as_the_run_does():
    rng = np.random.default_rng(0)
    left, right = (rng.uniform(0, 255, (51, 70, 1)).astype(np.float32) for _ in range(2))
    seen = []

    def constant_with_a_hole(batch):
        d = np.full(batch["image"].shape[:3], 3.0, np.float32)
        d[0, 10, 10] = np.nan  # one missing estimate at 1/2 resolution
        return d

    out, seconds = stereo_transfer.predict_pair(
        _fake_run(constant_with_a_hole, seen), left, right, downscale=2, repeats=2
    )
    assert out.shape == (51, 70) and seconds >= 0
    # 25 x 35 at half resolution, edge-padded to 64 x 64, through the run's own evaluation preprocessing.
    assert seen[0]["image"].shape == (1, 64, 64, 1)
    op = ops_lib.parse(planes_stereo.get_config().data.pp_eval, data.get("stereo_planes").op_defaults)
    want = op({"image": stereo_transfer.block_mean(left, 2), "image_right": right[:50, :70]}, None)["image"]
    np.testing.assert_allclose(seen[0]["image"][0, :25, :35], want, rtol=1e-6)
    np.testing.assert_allclose(seen[0]["image"][0, :25, 35:], np.repeat(want[:, -1:], 29, axis=1), rtol=1e-6)
    # Full-resolution disparities are twice the half-resolution ones; the hole stays missing, and so does the
    # last row, which made no full block.
    assert np.isnan(out[50]).all() and np.isnan(out[20:22, 20:22]).all()
    finite = np.isfinite(out[:50])
    assert finite.mean() > 0.98 and np.allclose(out[:50][finite], 6.0)


def test_views_of_different_sizes_are_refused():
    with pytest.raises(ConfigError, match="one size"):
        stereo_transfer.predict_pair(_fake_run(None, []), np.zeros((8, 8, 1)), np.zeros((8, 9, 1)))


def test_a_trained_mccnn_scores_a_wider_range_on_another_dataset(tmp_path):
    """The override reaches the task (more disparities scored) and the pair's figures equal the run's own."""
    config = planes_stereo.get_config("model=mccnn_fast,runlocal")
    mlcv.run(config, tmp_path / "run")
    run = runs.load_run(tmp_path / "run")
    wide = stereo_transfer.with_overrides(run, {"mccnn.max_disparity": 40}, "motorcycle")
    assert wide.config.mccnn.max_disparity == 40 and run.config.mccnn.max_disparity == 31
    record = data.source(data.get("stereo_planes"), "test")[0]
    left, right = record["image"], record["image_right"]
    out, _ = stereo_transfer.predict_pair(run, left, right, repeats=1)
    op = ops_lib.parse(config.data.pp_eval, data.get("stereo_planes").op_defaults)
    batch = {k: v[None] for k, v in op({"image": left, "image_right": right}, None).items()}
    np.testing.assert_allclose(out, np.asarray(run.predict(batch)["disparity"])[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="max_disparity=800"):
        stereo_transfer.with_overrides(run, {"mccnn.max_disparity": 800}, "motorcycle")

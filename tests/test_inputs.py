"""Training runs on each input pipeline (config.data.pipeline): the host paths are one run bit for bit, and the
on-device path is too where the op string draws nothing."""

from __future__ import annotations

import pytest

from experiments import digits_cnn
from mlcv.config import ConfigError
from mlcv.report import read_metrics
from mlcv.training import loop as train
from mlcv.training.prefetch import TIMING_METRICS
from mlcv.training.setup import RunSetup


def _run(tmp_path, pipeline: str, pp: str | None = None, steps: int = 24) -> tuple[dict, list[dict]]:
    config = digits_cnn.get_config("runlocal")
    config.update(total_epochs=None, total_steps=steps, eval_every_epochs=None, eval_every_steps=12)
    config.update(log_every_steps=4, tensorboard=False)
    config.data.pipeline = pipeline
    if pp is not None:
        config.data.pp_train = pp
    wd = tmp_path / f"{pipeline}-{steps}-{'default' if pp is None else pp.replace('|', '+')}"
    summary = train.run(config, wd)
    records = [{k: v for k, v in r.items() if k not in TIMING_METRICS} for r in read_metrics(wd / "metrics.jsonl")]
    return summary, records


def _same(a: tuple[dict, list[dict]], b: tuple[dict, list[dict]]) -> None:
    for split in ("validation", "test"):
        assert a[0][split] == b[0][split], split  # exactly
    assert a[1] == b[1]


def test_the_default_resolves_to_the_batch_path():
    assert RunSetup(digits_cnn.get_config("runlocal")).pipeline == "batch"


def test_batch_path_trains_the_record_paths_run_bit_for_bit(tmp_path):
    """The digits default's augmentation (random crops): the same losses at every step and the same test numbers."""
    _same(_run(tmp_path, "record"), _run(tmp_path, "auto"))


def test_device_path_without_random_ops_is_the_record_paths_run_bit_for_bit(tmp_path):
    """Same records in the same order, normalized on the device: the run does not change by a bit."""
    _same(_run(tmp_path, "record", "normalize"), _run(tmp_path, "device", "normalize"))


def test_device_path_trains(tmp_path):
    """With the default's random crops, drawn on the device: other crops than the host's, a run that learns."""
    summary, records = _run(tmp_path, "device", steps=60)
    losses = [r["train/loss"] for r in records if "train/loss" in r]
    assert losses[-1] < 0.5 * losses[0]
    assert summary["test"]["accuracy"] > 0.7


def test_a_pipeline_that_cannot_run_fails_before_anything_is_written(tmp_path):
    config = digits_cnn.get_config("runlocal")
    config.data.update(pipeline="device", pp_train="keep('image', 'label')|normalize")
    with pytest.raises(ConfigError, match=r"config.data.pipeline='device': config.data.pp_train: .*'keep'"):
        train.run(config, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()

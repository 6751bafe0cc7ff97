"""The train step as two executables (forward, backward) against one: the same numbers, and its config key."""

from __future__ import annotations

import json

import pytest

from experiments import digits_cnn, digits_linear
from mlcv.config import ConfigError
from mlcv.training import loop as train


def _losses(workdir):
    records = map(json.loads, (workdir / "metrics.jsonl").read_text().splitlines())
    return [r["train/loss"] for r in records if "train/loss" in r]


def test_split_step_equals_one_executable(tmp_path):
    runs = {}
    for mode in ("always", "never"):
        config = digits_cnn.get_config("runlocal")
        config.split_train_step = mode
        config.averaging.kind = "ema"  # the averaged parameters go through the backward half too
        runs[mode] = train.run(config, tmp_path / mode)
    assert runs["always"]["test"] == pytest.approx(runs["never"]["test"], abs=1e-6)
    assert runs["always"]["test_avg"] == pytest.approx(runs["never"]["test_avg"], abs=1e-6)
    losses = _losses(tmp_path / "always")
    assert losses and losses == pytest.approx(_losses(tmp_path / "never"), abs=1e-6)


def test_bad_value_fails_before_writing(tmp_path):
    config = digits_cnn.get_config("runlocal")
    config.split_train_step = "sometimes"
    with pytest.raises(ConfigError, match="config.split_train_step must be"):
        train.run(config, tmp_path / "w")
    assert not (tmp_path / "w").exists()


def test_newton_cannot_be_split(tmp_path):
    config = digits_linear.get_config("runlocal")
    config.optim.name = "newton"
    with config.unlocked():
        config.split_train_step = "always"
    with pytest.raises(ConfigError, match="cannot be split"):
        train.run(config, tmp_path / "w")

"""The train step as two executables (forward, backward) against one: the same numbers, and its config key."""

from __future__ import annotations

import json

import pytest

from experiments import digits_cnn, digits_linear
from mlcv.config import ConfigError
from mlcv.training import loop as train
from mlcv.training import steps


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


@pytest.mark.parametrize(("min_flops", "split"), [(steps.SPLIT_MIN_FLOPS, False), (0.0, True)])
def test_auto_splits_only_steps_of_enough_flops(monkeypatch, min_flops, split):
    """The digits CNN's step (batch 8: about 0.06 GFLOP by XLA's count) is one executable under "auto" on CPU;
    with the threshold at 0 it is split, as ResNet-18's is."""
    import jax

    from mlcv.data import pipeline
    from mlcv.training import sharding
    from mlcv.training.setup import RunSetup

    monkeypatch.setattr(steps, "SPLIT_MIN_FLOPS", min_flops)
    config = digits_cnn.get_config("runlocal")
    config.data.batch_size = 8
    setup = RunSetup(config)
    assert setup.split_step == ("auto" if jax.default_backend() == "cpu" else "never")
    mesh = sharding.data_mesh()
    host = pipeline.example_batch(
        setup.sources["train"], size=8, pp="normalize", op_defaults=setup.spec.op_defaults, keys=setup.task.batch_keys
    )
    state = sharding.put_replicated(setup.builder.init(jax.random.PRNGKey(0), host, setup.tx, None), mesh)
    step = steps.compile_train_step(setup.builder, state, sharding.put_batch(host, mesh), mesh, split="auto")
    assert isinstance(step, jax.stages.Compiled) is not split

"""Ensembles of finished runs and knowledge distillation from them."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score

from experiments import digits_cnn
from mlcv import ensemble, losses, train
from mlcv.config import ConfigError


def _config(seed: int, steps: int = 60):
    config = digits_cnn.get_config("runlocal")
    config.seed = seed
    config.total_steps = steps
    config.eval_every_steps = steps // 2
    config.tensorboard = False
    return config


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    root = tmp_path_factory.mktemp("teachers")
    return [(root / f"s{s}", train.run(_config(s), root / f"s{s}")) for s in (0, 1)]


def test_members_match_their_runs_and_ensemble_averages_probabilities(teachers):
    """Each member's accuracy is its run's own test accuracy; the ensemble is the argmax of mean probabilities."""
    runs = [ensemble.load_run(wd) for wd, _ in teachers]
    result = ensemble.evaluate(runs, "test")
    for member, (_, summary) in zip(result["members"], teachers, strict=True):
        assert member["accuracy"] == pytest.approx(summary["test"]["accuracy"], abs=1e-9)
        assert member["step"] == summary["best_step"]
    probs, labels = ensemble.predict(runs, "test")
    assert probs.shape == (2, 360, 10)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    assert result["ensemble_accuracy"] == pytest.approx(accuracy_score(labels, probs.mean(0).argmax(-1)))


def test_load_run_errors(tmp_path):
    """A directory without a run, or a missing step, is a clear ConfigError."""
    with pytest.raises(ConfigError, match="no config.json"):
        ensemble.load_run(tmp_path)


def test_distillation_loss_by_hand():
    """alpha T^2 KL(p || softmax(s/T)) + (1 - alpha) CE, with T = 2 and alpha = 0.7, in numpy."""
    s = np.array([[1.0, 2.0, 0.5]], np.float32)
    p = np.array([[0.2, 0.5, 0.3]], np.float32)
    q = np.exp(s / 2) / np.exp(s / 2).sum()
    kl = (p * np.log(p / q)).sum()
    ce = -np.log(np.exp(s[0, 1]) / np.exp(s).sum())
    got = float(losses.distillation(s, p, np.array([1]), 2.0, 0.7)[0])
    assert got == pytest.approx(0.7 * 4 * kl + 0.3 * ce, rel=1e-5)


def test_distillation_with_alpha_zero_is_plain_training(teachers, tmp_path):
    """alpha = 0 drops the teacher term: the student's run equals the plain classification run of its seed."""
    config = _config(2)
    config.task = "distillation"
    config.distill.teacher_workdirs = tuple(str(wd) for wd, _ in teachers)
    config.distill.alpha = 0.0
    distilled = train.run(config, tmp_path / "student")
    plain = train.run(_config(2), tmp_path / "plain")
    assert distilled["test"]["loss"] == pytest.approx(plain["test"]["loss"], abs=1e-6)


def test_distillation_from_ensemble_trains(teachers, tmp_path):
    """A student distilled from the two-run ensemble (T = 4, alpha = 0.9) learns: far above chance."""
    config = _config(3)
    config.task = "distillation"
    config.distill.teacher_workdirs = tuple(str(wd) for wd, _ in teachers)
    summary = train.run(config, tmp_path / "student")
    assert summary["test"]["accuracy"] > 0.5


def test_ensemble_command_line(teachers, capsys):
    """python -m mlcv.ensemble prints the same JSON result as ensemble.evaluate; a bad workdir exits 2."""
    import json

    dirs = [str(wd) for wd, _ in teachers]
    assert ensemble.main(dirs) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["ensemble_accuracy"] == pytest.approx(
        ensemble.evaluate([ensemble.load_run(d) for d in dirs])["ensemble_accuracy"]
    )
    assert ensemble.main(["/nonexistent-run"]) == 2
    assert "error:" in capsys.readouterr().err

"""Ensembles of finished runs and knowledge distillation from them."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, log_loss

from experiments import digits_cnn
from mlcv import data, losses
from mlcv.config import ConfigError
from mlcv.data import pipeline
from mlcv.orchestration import ensemble
from mlcv.training import loop as train
from mlcv.training import runs as runs_lib


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


def _probabilities(runs, role="test"):
    """Every member's softmax probabilities and the labels of a split, in NumPy, batch by batch."""
    spec = data.get("digits")
    src = data.source(spec, spec.splits[role])
    probs, labels = [[] for _ in runs], []
    for batch in pipeline.eval_batches(
        src, batch_size=128, pp="normalize", op_defaults=spec.op_defaults, keys=("image", "label")
    ):
        n = int(batch["mask"].sum())
        labels.append(batch["label"][:n])
        for i, r in enumerate(runs):
            logits = np.asarray(r.predict(batch)["logits"][:n], np.float64)
            e = np.exp(logits - logits.max(-1, keepdims=True))
            probs[i].append(e / e.sum(-1, keepdims=True))
    return np.stack([np.concatenate(p) for p in probs]), np.concatenate(labels)


def test_members_match_their_runs_and_ensemble_averages_probabilities(teachers):
    """Each member's metrics are its run's own; the ensemble is the argmax of mean probabilities, its loss their NLL."""
    runs = [runs_lib.load_run(wd) for wd, _ in teachers]
    result = runs_lib.evaluate_runs(runs, "test")
    for member, (_, summary) in zip(result["members"], teachers, strict=True):
        assert member["accuracy"] == pytest.approx(summary["test"]["accuracy"], abs=1e-9)
        assert member["loss"] == pytest.approx(summary["test"]["loss"], abs=1e-6)
        assert member["step"] == summary["best_step"]
    probs, labels = _probabilities(runs)
    assert probs.shape == (2, 360, 10)
    mean = probs.mean(0)
    assert result["ensemble"]["accuracy"] == pytest.approx(accuracy_score(labels, mean.argmax(-1)))
    assert result["ensemble"]["loss"] == pytest.approx(log_loss(labels, mean, labels=range(10)), rel=1e-4)


def test_load_run_errors(tmp_path):
    """A directory without a run, or a missing step, is a clear ConfigError."""
    with pytest.raises(ConfigError, match="no config.json"):
        runs_lib.load_run(tmp_path)


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
    """python -m mlcv.orchestration.ensemble prints the result of evaluate_runs as JSON; a bad workdir exits 2."""
    import json

    dirs = [str(wd) for wd, _ in teachers]
    assert ensemble.main(dirs) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["ensemble"]["accuracy"] == pytest.approx(
        runs_lib.evaluate_runs([runs_lib.load_run(d) for d in dirs])["ensemble"]["accuracy"]
    )
    assert ensemble.main(["/nonexistent-run"]) == 2
    assert "error:" in capsys.readouterr().err

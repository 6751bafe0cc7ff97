"""The fitted-method runner: workdir files, re-runs, config errors, the launcher's line."""

from __future__ import annotations

import json
import sys
import types

import ml_collections
import numpy as np
import pytest
from sklearn.neighbors import NearestCentroid

import mlcv
from mlcv import classic, data
from mlcv.classic.base import FittedMethod
from mlcv.config import ConfigError


class _Centroids(FittedMethod):
    """Nearest class mean on digits: small, real, and checked against scikit-learn."""

    def __init__(self, config):
        super().__init__(config)
        if config.shrink < 0:
            raise ConfigError(f"config.shrink must be >= 0, got {config.shrink}")
        self.split = {r: data.load_arrays("digits", r) for r in ("train", "validation", "test")}

    def _xy(self, role):
        d = self.split[role]
        return d["image"].reshape(len(d["label"]), -1).astype(np.float64), d["label"]

    def fit(self, log):
        x, y = self._xy("train")
        self.means = np.stack([x[y == c].mean(0) for c in range(10)])
        for c in range(10):
            log(c, {"class_size": float((y == c).sum())})
        return {"classes": 10}

    def predict(self, x):
        return np.argmin(((x[:, None] - self.means[None]) ** 2).sum(-1), 1)

    def evaluate(self, role):
        x, y = self._xy(role)
        return {"accuracy": float((self.predict(x) == y).mean())}

    def plot(self, plots_dir):
        (plots_dir / "means.txt").write_text("ok")


@pytest.fixture
def centroid_task(monkeypatch):
    module = types.ModuleType("mlcv_test_centroids")
    module.Centroids = _Centroids
    monkeypatch.setitem(sys.modules, "mlcv_test_centroids", module)
    monkeypatch.setitem(classic._METHODS, "centroids", "mlcv_test_centroids:Centroids")


def _config(**kw):
    return ml_collections.ConfigDict({"task": "centroids", "seed": 0, "shrink": 0.0, **kw})


def test_fitted_run_writes_the_workdir_and_matches_sklearn(centroid_task, tmp_path):
    summary = mlcv.run(_config(), tmp_path / "run")
    d = {r: data.load_arrays("digits", r) for r in ("train", "test")}
    ref = NearestCentroid().fit(d["train"]["image"].reshape(-1, 64), d["train"]["label"])
    expected = (ref.predict(d["test"]["image"].reshape(-1, 64)) == d["test"]["label"]).mean()
    assert summary["test"]["accuracy"] == pytest.approx(expected)
    run = tmp_path / "run"
    assert json.loads((run / "config.json").read_text())["task"] == "centroids"
    assert json.loads((run / "summary.json").read_text())["headline"].startswith("test accuracy")
    assert (run / "plots" / "means.txt").exists()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 10
    # The same command again fits again: the same numbers, metrics rewritten rather than appended to.
    again = mlcv.run(_config(), run)
    assert again["test"] == summary["test"]
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 10


def test_bad_config_fails_before_writing(centroid_task, tmp_path):
    with pytest.raises(ConfigError, match="config.shrink"):
        mlcv.run(_config(shrink=-1.0), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_unknown_method_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown fitted method 'nope'"):
        classic.get("nope")


def test_workdir_of_another_config_is_refused(centroid_task, tmp_path):
    mlcv.run(_config(), tmp_path / "run")
    with pytest.raises(ConfigError, match="different config"):
        mlcv.run(_config(shrink=1.0), tmp_path / "run")

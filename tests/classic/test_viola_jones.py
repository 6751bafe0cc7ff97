"""Viola-Jones end to end: the launcher's workdir, config errors, the cascade's scan and the scaled detector."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from conftest import ROOT, launch_cmd

from experiments import faces_viola_jones
from mlcv import train
from mlcv.classic import viola_jones
from mlcv.config import ConfigError
from mlcv.ops.integral import integral_image


@pytest.fixture(scope="module")
def fitted():
    """The runlocal detector, fitted once for the module."""
    method = viola_jones.ViolaJones(faces_viola_jones.get_config("runlocal"))
    records = []
    facts = method.fit(lambda step, scalars: records.append((step, scalars)))
    return method, facts, records


def test_launch_runlocal_writes_the_workdir(tmp_path, fitted):
    workdir = tmp_path / "vj"
    out = subprocess.run(
        launch_cmd(
            "--config", str(ROOT / "experiments" / "faces_viola_jones.py") + ":runlocal", "--workdir", str(workdir)
        ),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    line = [ln for ln in out.stdout.splitlines() if ln.startswith(str(workdir))]
    assert len(line) == 1 and "test recall" in line[0] and "wall time" in line[0]
    assert json.loads((workdir / "config.json").read_text())["task"] == "viola_jones"
    summary = json.loads((workdir / "summary.json").read_text())
    for role in ("validation", "test"):
        for key in ("recall", "false_positive_rate", "accuracy", "scene_false_positive_rate"):
            assert 0.0 <= summary[role][key] <= 1.0
    assert summary["test"]["astronaut_windows"] > 0
    assert summary["fit"]["stages"] == len(summary["fit"]["features_per_stage"]) >= 1
    records = [json.loads(ln) for ln in (workdir / "metrics.jsonl").read_text().splitlines()]
    rounds = [r for r in records if "train_error" in r]
    stages = [r for r in records if "stage/features" in r]
    assert len(rounds) == sum(summary["fit"]["features_per_stage"])
    assert len(stages) == summary["fit"]["stages"]
    assert all(0 < r["weighted_error"] < 0.5 for r in rounds)
    assert (workdir / "plots" / "haar_features.png").stat().st_size > 0
    assert (workdir / "plots" / "astronaut_detections.png").stat().st_size > 0
    # the same config fitted again in this process gives the same numbers (module fixture, same seed)
    method = fitted[0]
    for role in ("validation", "test"):
        again = method.evaluate(role)
        for key, value in summary[role].items():
            if key != "astronaut_seconds":
                assert again[key] == value, (role, key)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("cascade.stage_recall", 1.5, "config.cascade.stage_recall"),
        ("features.types", ("two_h", "five"), "config.features.types"),
        ("negatives.test_scenes", ("brick",), "config.negatives.test_scenes"),  # brick trains: not disjoint
        ("negatives.train_scenes", ("astronaut",), "config.negatives.train_scenes"),  # has a face
        ("window", 4, "config.window"),
        ("detect.gt_box", (10, 10, 5, 20), "config.detect.gt_box"),
    ],
)
def test_bad_config_raises_naming_the_key_before_writing(tmp_path, key, value, message):
    config = faces_viola_jones.get_config("runlocal")
    section, _, name = key.rpartition(".")
    (config[section] if section else config)[name] = value
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        train.run(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_stage_thresholds_keep_the_validation_faces(fitted):
    method, facts, records = fitted
    # stage_recall 0.99 of at most 40 validation faces (20 and their mirror images) keeps all of them
    assert method.evaluate("validation")["recall"] == 1.0
    stages = [s for _, s in records if "stage/validation_recall" in s]
    assert [s["stage/validation_recall"] for s in stages] == [1.0] * facts["stages"]


def test_scan_agrees_with_the_windows_it_cuts_and_with_the_2x_scaled_detector(fitted):
    method, _, _ = fitted
    cascade = method.cascade
    w = cascade.window
    rng = np.random.default_rng(0)
    # a mix of faces pasted on noise, so that some windows pass and some do not
    image = rng.random((60, 72)) * 0.5
    faces = method.split["train"][0][method.split["train"][1] == 1]
    for k, (y, x) in enumerate([(3, 5), (30, 40), (20, 10)]):
        image[y : y + w, x : x + w] = faces[k]
    ii, ii2 = integral_image(image, pad=True), integral_image(image**2, pad=True)
    x0, y0, size, _, tried = cascade.scan(ii, ii2, 1.0, 1)
    assert size == w and tried == (60 - w + 1) * (72 - w + 1)
    cut = np.lib.stride_tricks.sliding_window_view(image, (w, w)).reshape(-1, w, w)
    accepted, _ = cascade.classify_windows(cut)
    ys, xs = np.divmod(np.flatnonzero(accepted), 72 - w + 1)
    assert 0 < len(xs) < tried
    assert set(zip(x0.tolist(), y0.tolist(), strict=True)) == set(zip(xs.tolist(), ys.tolist(), strict=True))
    # the detector scaled by 2 on the image with every pixel doubled accepts the same windows, at twice the place
    big = np.kron(image, np.ones((2, 2)))
    jj, jj2 = integral_image(big, pad=True), integral_image(big**2, pad=True)
    bx, by, bsize, _, _ = cascade.scan(jj, jj2, 2.0, 2)
    assert bsize == 2 * w
    np.testing.assert_array_equal(np.sort(bx * 1000 + by), np.sort(2 * x0 * 1000 + 2 * y0))

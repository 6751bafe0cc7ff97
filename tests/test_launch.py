"""launch.py refuses bad input with one clear line, a non-zero exit and no files written."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import ROOT, launch_cmd

from mlcv.orchestration import cli

CASES = {
    "typo_key": (["--config.optim.lrr=0.1"], "unknown config key 'lrr' in --config.optim.lrr", '"lr"'),
    "unknown_section": (["--config.nosuch.x=1"], "unknown config key 'nosuch'", "--config.nosuch.x"),
    "wrong_type": (["--config.optim.lr=abc"], "--config.optim.lr=abc", "could not convert"),
    "missing_file": (["--config=experiments/nope.py"], "config file 'experiments/nope.py'", "does not exist"),
    "bad_arg": (["--config=experiments/digits_cnn.py:bogus"], "unknown config arg 'bogus'", "runlocal"),
    "missing_dataset": (["--config.data.name=nope"], "unknown dataset 'nope'", "config.data.name"),
    "unknown_model": (["--config.model.name=nope"], "unknown model 'nope'", "cnn"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_fails_cleanly(case, tmp_path):
    """Each bad input prints exactly one error line naming it, exits 2 and writes nothing."""
    args, *needles = CASES[case]
    wd = tmp_path / "run"
    proc = subprocess.run(launch_cmd(*args, f"--workdir={wd}"), cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-2000:]
    for needle in needles:
        assert needle in errors[0]
    assert not wd.exists()


def test_workdir_of_another_config_is_refused(tmp_path):
    """Resuming a workdir with a different config names the differing key instead of mixing two runs."""
    wd = tmp_path / "run"
    wd.mkdir()
    (wd / "config.json").write_text('{"seed": 1}')
    proc = subprocess.run(
        launch_cmd("--config=experiments/digits_cnn.py:runlocal", f"--workdir={wd}"),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "different config" in proc.stderr and "seed" in proc.stderr
    assert sorted(p.name for p in wd.iterdir()) == ["config.json"]


def test_persistent_compilation_cache(tmp_path, monkeypatch):
    """A launch fills $MLCV_COMPILATION_CACHE and still reports its compile time; 'off' turns the cache off."""
    args = ["--config=experiments/digits_cnn.py:runlocal", "--config.total_steps=2", "--config.eval_every_steps=2"]
    cache = tmp_path / "cache"
    env = dict(os.environ, MLCV_COMPILATION_CACHE=str(cache))
    proc = subprocess.run(
        launch_cmd(*args, f"--workdir={tmp_path / 'a'}"), cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert any(p.name.endswith("-cache") for p in cache.iterdir())
    assert "compile_time_s" in (tmp_path / "a" / "summary.json").read_text()
    for value in ("off", "0", ""):
        monkeypatch.setenv("MLCV_COMPILATION_CACHE", value)
        assert cli.enable_compilation_cache() is None


def test_summary_mode(tmp_path):
    """--mode=layers prints the layer table of the experiment's model and trains nothing."""
    wd = tmp_path / "sum"
    proc = subprocess.run(launch_cmd("--mode=layers", f"--workdir={wd}"), cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # The default digits CNN: 99,370 parameters, counted by hand in tests/models/test_models.py.
    assert "99,370 parameters" in proc.stdout
    assert (wd / "layers.md").is_file() and not (wd / "checkpoints").exists()

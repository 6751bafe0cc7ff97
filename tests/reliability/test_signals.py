"""SIGTERM and SIGINT mid-run: no traceback, a checkpoint at the step printed, the conventional exit status,
and a resume that ends equal to an uninterrupted run (summary numbers, metrics.jsonl, TensorBoard).

The SIGTERM run is a real ``launch.py`` process, signalled while a save is in flight when the poll
catches one; the SIGINT run is in-process (the handler runs in pytest's main thread), which also
checks that the caller's handlers are back afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import ROOT, launch_cmd

from experiments import digits_cnn
from mlcv.orchestration import cli
from mlcv.report import read_metrics
from mlcv.report.writers import read_scalars
from mlcv.training import checkpoint, interrupts
from mlcv.training.prefetch import TIMING_METRICS

CONFIG_PATH = "experiments/digits_cnn.py"
STEPS, EVERY = 40, 10
OVERRIDES = [f"--config.total_steps={STEPS}", f"--config.eval_every_steps={EVERY}", "--config.log_every_steps=5"]


def _config():
    config = digits_cnn.get_config("runlocal")
    config.total_steps, config.eval_every_steps, config.log_every_steps = STEPS, EVERY, 5
    return config


@pytest.fixture(scope="module")
def ref(tmp_path_factory) -> Path:
    """The uninterrupted run."""
    wd = tmp_path_factory.mktemp("ref") / "run"
    assert cli.main(_config(), str(wd), config_path=CONFIG_PATH) == 0
    return wd


def _steps(workdir: Path) -> list[int]:
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def _stopped_at(err: str, name: str) -> int:
    """The step of the run's last stderr line, which must be the one-line stop message."""
    last = [ln for ln in err.splitlines() if ln.strip()][-1]
    prefix, suffix = f"stopped by {name} at step ", "; checkpoint saved; re-run the same command to resume"
    assert last.startswith(prefix) and last.endswith(suffix), err[-2000:]
    return int(last[len(prefix) : -len(suffix)])


def _resume_and_compare(ref: Path, wd: Path, step: int, capsys) -> None:
    """The stop left ``step`` on disk, verified; re-running ends as the uninterrupted run did."""
    assert 0 < step < STEPS and step in _steps(wd)
    for s in _steps(wd):
        assert checkpoint.verify(wd / "checkpoints" / str(s)) is None, s
    capsys.readouterr()
    assert cli.main(_config(), str(wd), config_path=CONFIG_PATH) == 0
    assert f"resumed from step {step} " in capsys.readouterr().err
    a, b = (json.loads((d / "summary.json").read_text()) for d in (ref, wd))
    assert b["best_step"] == a["best_step"]
    for split in ("validation", "test"):
        for k, v in a[split].items():
            assert b[split][k] == pytest.approx(v, abs=1e-6), (split, k)
    ra, rb = read_metrics(ref / "metrics.jsonl"), read_metrics(wd / "metrics.jsonl")
    assert [r["step"] for r in rb] == [r["step"] for r in ra]
    for x, y in zip(ra, rb, strict=True):
        assert x.keys() == y.keys()
        for k in x.keys() - TIMING_METRICS:
            assert y[k] == pytest.approx(x[k], abs=1e-6), (x["step"], k)
    ta, tb = read_scalars(ref / "tensorboard"), read_scalars(wd / "tensorboard")
    assert [t[:2] for t in tb] == [t[:2] for t in ta]


def test_sigterm_saves_the_step_and_resumes_exactly(ref, tmp_path, capsys):
    """SIGTERM while the first save is in flight (when the poll catches it): exit 143, one line, both saves kept."""
    wd = tmp_path / "run"
    ckpt = wd / "checkpoints"
    proc = subprocess.Popen(
        launch_cmd("--config", f"{CONFIG_PATH}:runlocal", f"--workdir={wd}", *OVERRIDES),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        names = os.listdir(ckpt) if ckpt.exists() else []
        if any("tmp" in n for n in names) or str(EVERY) in names:
            break
        time.sleep(0.002)
    assert proc.poll() is None, "the run ended before it could be signalled"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    assert "Traceback" not in err, err
    step = _stopped_at(err, "SIGTERM")
    assert EVERY in _steps(wd)  # the save in flight was not thrown away
    _resume_and_compare(ref, wd, step, capsys)


def test_sigint_in_process_saves_the_step_and_restores_handlers(ref, tmp_path, capsys):
    """Ctrl-C once a few steps have run: exit 130, one line, the caller's handlers back, an exact resume."""
    wd = tmp_path / "run"
    caught = []

    def callers_handler(signum, frame):
        caught.append(signum)

    previous = signal.signal(signal.SIGINT, callers_handler)
    done = threading.Event()

    def press_ctrl_c():
        while not done.is_set():
            if any(r["step"] >= 5 for r in read_metrics(wd / "metrics.jsonl")):
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.005)

    watcher = threading.Thread(target=press_ctrl_c, daemon=True)
    try:
        watcher.start()
        capsys.readouterr()
        rc = cli.main(_config(), str(wd), config_path=CONFIG_PATH)
        done.set()
        watcher.join()
        err = capsys.readouterr().err
        mine = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert rc == 130, err
    assert "Traceback" not in err, err
    assert caught == [] and mine is callers_handler
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    _resume_and_compare(ref, wd, _stopped_at(err, "SIGINT"), capsys)


def test_a_second_signal_takes_the_default_action():
    """After the first signal the handlers are the defaults, so a second Ctrl-C stops the process at once."""
    stops = interrupts.StopRequests()
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with stops:
        stops.check(3)  # nothing received yet
        signal.raise_signal(signal.SIGTERM)
        assert stops.received == signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL == signal.getsignal(signal.SIGINT)
        with pytest.raises(interrupts.Interrupted) as info:
            stops.check(7)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    assert info.value.exit_code == 143 and str(info.value).startswith("stopped by SIGTERM at step 7;")


@pytest.mark.slow
def test_a_second_ctrl_c_stops_the_process_at_once(tmp_path):
    """Ctrl-C pressed again and again (every 20 ms) from a save on: the first asks for a stop, the next kills.

    A stop takes a save and a wait; the second Ctrl-C must not wait for it (status -SIGINT, not 130).
    """
    wd = tmp_path / "run"
    ckpt = wd / "checkpoints"
    proc = subprocess.Popen(
        launch_cmd("--config", f"{CONFIG_PATH}:runlocal", f"--workdir={wd}", *OVERRIDES),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if ckpt.exists() and any("tmp" in n or n == str(EVERY) for n in os.listdir(ckpt)):
            break
        time.sleep(0.002)
    assert proc.poll() is None, "the run ended before it could be signalled"
    while proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        time.sleep(0.02)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGINT, err[-3000:]
    assert "Traceback" not in err, err

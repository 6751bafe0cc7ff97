"""kill -9 at random moments: every killed run resumes and ends with the uninterrupted run's numbers and logs.

The moments are drawn uniformly over the whole life of a run (start-up, compilation, training, saves, the
final evaluation), plus one kill aimed at the last save (the moment its temporary directory appears), with each
training input pipeline (``config.data.pipeline``: the default "auto", which is "batch" here, "record" and
"device"). The fast test in CI makes two kills at random moments on the default pipeline, one on "device" and
none on "record" (the default before, long tested here), besides the last-save kill on each; ``-m slow`` makes
twenty::

  .venv/bin/python -m pytest -m slow tests/reliability/test_kill.py
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, launch_cmd

from mlcv.report import read_metrics
from mlcv.training.prefetch import TIMING_METRICS

STEPS = 30
ARGS = [
    "--config=experiments/digits_cnn.py:runlocal",
    f"--config.total_steps={STEPS}",
    "--config.eval_every_steps=10",
    "--config.log_every_steps=5",
    "--config.checkpoint.keep=1",
    "--config.tensorboard=False",
]
# Wall-clock figures of a run are not results.
_TIMING = tuple(TIMING_METRICS)


def _args(workdir: Path) -> list[str]:
    # The pipeline is the workdir's parent's name, so that every helper below takes one path.
    return launch_cmd(*ARGS, f"--config.data.pipeline={workdir.parent.name}", f"--workdir={workdir}")


def _launch(workdir: Path) -> subprocess.Popen:
    return subprocess.Popen(_args(workdir), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(workdir: Path) -> None:
    proc = subprocess.run(_args(workdir), cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _records(workdir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in _TIMING} for r in read_metrics(workdir / "metrics.jsonl")]


@pytest.fixture(scope="module", params=["auto", "record", "device"])
def reference(request, tmp_path_factory) -> tuple[Path, float]:
    """An uninterrupted run of one pipeline and its wall time."""
    wd = tmp_path_factory.mktemp("kill") / request.param / "reference"
    t0 = time.time()
    _finish(wd)
    return wd, time.time() - t0


def _kill_at(workdir: Path, delay_s: float) -> None:
    proc = _launch(workdir)
    time.sleep(delay_s)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()


def _kill_during_last_save(workdir: Path, timeout_s: float = 120.0) -> None:
    """Kills the moment orbax starts writing the last step (its temporary directory appears)."""
    proc = _launch(workdir)
    ckpt, t0 = workdir / "checkpoints", time.time()
    while proc.poll() is None and time.time() - t0 < timeout_s:
        if ckpt.is_dir() and any(p.name.startswith(f"{STEPS}.") and "tmp" in p.name for p in ckpt.iterdir()):
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.002)
    proc.communicate()


def _assert_same(reference: Path, workdir: Path) -> None:
    a = json.loads((reference / "summary.json").read_text())
    b = json.loads((workdir / "summary.json").read_text())
    assert b["best_step"] == a["best_step"]
    for split in ("validation", "test"):
        assert b[split] == a[split], split  # exactly: the same numbers, not merely close ones
    assert _records(workdir) == _records(reference)


def _kills(reference: tuple[Path, float], tmp_path: Path, count: int, seed: int) -> None:
    ref, wall = reference
    rng = np.random.default_rng(seed)
    for i, delay in enumerate(rng.uniform(0.0, wall, size=count)):
        wd = tmp_path / ref.parent.name / f"k{i}"
        _kill_at(wd, float(delay))
        _finish(wd)
        _assert_same(ref, wd)


def test_two_kills_and_one_during_the_last_save(reference, tmp_path):
    """A fast core for CI: kill -9 at random moments (two on the default pipeline, one on "device", none on "record"),
    and one as the last save starts."""
    # The per-record loader, the default of every earlier run, had two here for long; it keeps the last-save one.
    kills = {"auto": 2, "device": 1, "record": 0}[reference[0].parent.name]
    _kills(reference, tmp_path, count=kills, seed=0)
    wd = tmp_path / reference[0].parent.name / "last_save"
    _kill_during_last_save(wd)
    _finish(wd)
    _assert_same(reference[0], wd)


@pytest.mark.slow
@pytest.mark.timeout(3600)  # twenty runs, each killed and resumed: longer than the suite's 600 s a test
def test_twenty_kills(reference, tmp_path):
    """Twenty kill -9 at moments drawn over a whole run; each resumes to the uninterrupted run's numbers and logs."""
    _kills(reference, tmp_path, count=20, seed=1)

"""The workdir lock: a second launch on a busy workdir is refused at once, a killed holder blocks nothing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import ROOT, launch_cmd

import mlcv
from experiments import digits_cnn, digits_knn
from mlcv import workdirs
from mlcv.report import read_metrics

# Few steps: the run only has to outlast the second launch's start-up, which its compilation does.
RUN = [
    "--config=experiments/digits_cnn.py:runlocal",
    "--config.total_steps=20",
    "--config.eval_every_steps=10",
    "--config.tensorboard=False",
]
# Holds the lock of argv[1] until killed: a stand-in holder that starts in a blink.
HOLDER = """import sys, time
from mlcv import workdirs
with workdirs.lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(600)
"""


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"exited {proc.returncode} first"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _comparable(records: list[dict]) -> list[dict]:
    """metrics.jsonl records without the timings, which differ between any two runs."""
    return [{k: v for k, v in r.items() if not k.endswith("per_sec")} for r in records]


def test_lock_refuses_a_second_holder(tmp_path):
    """In one process too (flock locks open files, not processes): the refusal names workdir, pid and host."""
    wd = tmp_path / "run"
    with workdirs.lock(wd):
        with pytest.raises(workdirs.WorkdirBusy) as e:
            with workdirs.lock(wd):
                pass
        msg = str(e.value)
        assert msg.startswith(f"workdir {wd} is in use by process {os.getpid()} on host {socket.gethostname()}")
        assert msg.endswith("; wait for it or use another --workdir")
        assert "\n" not in msg
    with workdirs.lock(wd):  # released at the end of the block
        pass
    with pytest.raises(RuntimeError, match="boom"), workdirs.lock(wd):
        raise RuntimeError("boom")
    with workdirs.lock(wd):  # and when the block raises
        pass


def test_inactive_lock_writes_nothing(tmp_path):
    """Processes other than 0 of a multi-process run take no lock and create nothing."""
    wd = tmp_path / "run"
    with workdirs.lock(wd, active=False):
        assert not wd.exists()


def test_workdir_that_is_a_file(tmp_path):
    """A file where the workdir should be: one line naming it, not a traceback."""
    wd = tmp_path / "run"
    wd.write_text("x")
    with pytest.raises(workdirs.WorkdirError, match=f"cannot write {wd}: it exists and is not a directory"):
        with workdirs.lock(wd):
            pass


def test_lock_of_a_killed_holder_is_released(tmp_path):
    """kill -9 of the holder leaves .lock behind but not the lock: the kernel drops it with the process."""
    wd = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(wd)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(workdirs.WorkdirBusy, match=f"process {holder.pid} "):
            with workdirs.lock(wd):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (wd / workdirs.LOCK_FILE).exists()
    with workdirs.lock(wd):
        pass


def test_fitted_method_is_refused_while_the_workdir_is_locked(tmp_path):
    """The fitted-method runner takes the same lock, before its first write."""
    wd = tmp_path / "run"
    with workdirs.lock(wd):
        with pytest.raises(workdirs.WorkdirBusy, match=f"^workdir {wd} is in use by process {os.getpid()} "):
            mlcv.run(digits_knn.get_config("runlocal"), wd)
    assert sorted(p.name for p in wd.iterdir()) == [workdirs.LOCK_FILE]


def test_sweep_stops_at_a_trial_in_use(tmp_path):
    """A second sweep on a busy sweep workdir stops at the trial that the first is running (one error
    line and exit 2 from the launcher), without writing into that trial."""
    from mlcv.orchestration import sweep

    config = digits_cnn.get_config("runlocal")
    config.update(total_steps=4, eval_every_steps=4, tensorboard=False)
    spec = {"type": "grid", "params": {"seed": [3]}}
    trial = tmp_path / sweep.trial_name({"seed": 3})
    with workdirs.lock(trial):
        with pytest.raises(workdirs.WorkdirBusy, match=f"^workdir {trial} is in use by process {os.getpid()} "):
            sweep.run(config, spec, tmp_path)
    assert sorted(p.name for p in trial.iterdir()) == [workdirs.LOCK_FILE]


@pytest.mark.slow
def test_second_launch_is_refused_and_the_first_run_is_unaffected(tmp_path):
    """While a run holds its workdir, a second launch there exits 2 with one line naming the workdir and
    the holder's pid, before the run ends; the run then ends as an uninterrupted run in another workdir
    does, one whose previous holder was killed with -9 (so a stale lock blocks nothing)."""
    busy, ref = tmp_path / "busy", tmp_path / "ref"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(ref)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "locked\n"
    holder.send_signal(signal.SIGKILL)
    holder.wait()

    first = subprocess.Popen(launch_cmd(*RUN, f"--workdir={busy}"), cwd=ROOT, stderr=subprocess.PIPE, text=True)
    reference = None
    try:
        # config.json is written under the lock, so once it is there the run holds the workdir.
        _wait_for(lambda: (busy / "config.json").exists(), first)
        before = {name: (busy / name).stat().st_mtime_ns for name in ("config.json", workdirs.LOCK_FILE)}
        t0 = time.monotonic()
        second = subprocess.run(launch_cmd(*RUN, f"--workdir={busy}"), cwd=ROOT, capture_output=True, text=True)
        refused_s = time.monotonic() - t0
        first_running = first.poll() is None
        # Started now, the reference overlaps the first run's end and finds its compiled steps cached.
        reference = subprocess.Popen(launch_cmd(*RUN, f"--workdir={ref}"), cwd=ROOT, stderr=subprocess.PIPE, text=True)
        _, first_err = first.communicate(timeout=300)
        _, reference_err = reference.communicate(timeout=300)
    finally:
        for proc in (first, reference):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert second.returncode == 2, second.stderr[-2000:]
    assert "Traceback" not in second.stderr
    errors = [ln for ln in second.stderr.splitlines() if ln.startswith("error:")]
    assert errors == [
        f"error: workdir {busy} is in use by process {first.pid} on host {socket.gethostname()} "
        f"(started {json.loads((busy / workdirs.LOCK_FILE).read_text())['started']}); "
        "wait for it or use another --workdir"
    ]
    assert first_running, f"the second launch waited for the first ({refused_s:.1f} s)"
    assert first.returncode == 0, first_err[-3000:]
    # The refused launch wrote nothing: config.json and the lock file are the first run's.
    assert {name: (busy / name).stat().st_mtime_ns for name in before} == before
    assert reference.returncode == 0, reference_err[-3000:]
    summaries = [json.loads((wd / "summary.json").read_text()) for wd in (busy, ref)]
    assert summaries[0]["test"] == summaries[1]["test"]
    assert summaries[0]["validation"] == summaries[1]["validation"]
    records = [_comparable(read_metrics(wd / "metrics.jsonl")) for wd in (busy, ref)]
    assert records[0] == records[1]

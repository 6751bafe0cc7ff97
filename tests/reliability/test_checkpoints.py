"""Checkpoints across restarts and corruption: retention keeps every step the loop points to, checksums
catch any flipped byte, and the resumed logs equal an uninterrupted run's.

Every run here is one short digits run (10 steps, validation every 5, best step pinned to 5 by an
unreachable min_delta, keep=1), run in-process through the launcher's ``cli.main``, so each check is
a re-run of seconds. The exhaustive byte-flip sweep is ``slow``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from experiments import digits_cnn
from mlcv.orchestration import cli
from mlcv.report import read_metrics
from mlcv.report.writers import read_scalars
from mlcv.training import checkpoint
from mlcv.training.prefetch import TIMING_METRICS

CONFIG_PATH = "experiments/digits_cnn.py"


class _Killed(BaseException):
    """Stands for kill -9 at a chosen point: nothing after it runs (no ``except Exception`` catches it)."""


def _config():
    config = digits_cnn.get_config("runlocal")
    config.total_steps = 10
    config.eval_every_steps = 5
    config.log_every_steps = 2  # records before the first checkpoint, for the restart-before-it test
    config.checkpoint.keep = 1
    config.early_stopping.min_delta = 1.0  # no gain beats it: the best step stays 5, older than the newest
    return config


def _main(workdir: Path, capsys) -> tuple[int, str]:
    capsys.readouterr()
    rc = cli.main(_config(), str(workdir), config_path=CONFIG_PATH)
    return rc, capsys.readouterr().err


def _steps(workdir: Path) -> list[int]:
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def _assert_same_run(ref: Path, wd: Path, logs: bool = True) -> None:
    """Same best step and test numbers as the reference; with ``logs``, the same metrics and TensorBoard records."""
    a, b = (json.loads((d / "summary.json").read_text()) for d in (ref, wd))
    assert b["best_step"] == a["best_step"]
    for split in ("validation", "test"):
        for k, v in a[split].items():
            assert b[split][k] == pytest.approx(v, abs=1e-6), (split, k)
    if not logs:
        return
    ra, rb = read_metrics(ref / "metrics.jsonl"), read_metrics(wd / "metrics.jsonl")
    assert [r["step"] for r in rb] == [r["step"] for r in ra]
    for x, y in zip(ra, rb, strict=True):
        assert x.keys() == y.keys()
        for k in x.keys() - TIMING_METRICS:
            assert y[k] == pytest.approx(x[k], abs=1e-6), (x["step"], k)
    ta, tb = read_scalars(ref / "tensorboard"), read_scalars(wd / "tensorboard")
    assert [t[:2] for t in tb] == [t[:2] for t in ta]
    for (step, tag, x), (_, _, y) in zip(ta, tb, strict=True):
        if tag not in TIMING_METRICS:
            assert y == pytest.approx(x, abs=1e-6), (step, tag)


@pytest.fixture(scope="module")
def ref(tmp_path_factory) -> Path:
    """A finished reference run: checkpoints 5 (best) and 10 (newest)."""
    wd = tmp_path_factory.mktemp("ref") / "run"
    assert cli.main(_config(), str(wd), config_path=CONFIG_PATH) == 0
    assert _steps(wd) == [5, 10]
    assert json.loads((wd / "summary.json").read_text())["best_step"] == 5
    return wd


def test_restart_after_losing_the_newest_step_keeps_the_best(ref, tmp_path, monkeypatch, capsys):
    """The issue's reproduction: the newest step lost, a re-run, and a kill right after its first save.

    Orbax's best-N policy forgot the best step's metrics on restart and deleted it at that save, so
    every later re-run failed with ``Checkpoint at .../5 not found``.
    """
    wd = tmp_path / "run"
    shutil.copytree(ref, wd)
    shutil.rmtree(wd / "checkpoints" / "10")
    real = checkpoint.Checkpoints._settle

    def settle_then_die(self):
        saving = self._saving
        real(self)  # the save is on disk, with its manifest, and retention has run
        if saving is not None:
            raise _Killed

    monkeypatch.setattr(checkpoint.Checkpoints, "_settle", settle_then_die)
    with pytest.raises(_Killed):
        _main(wd, capsys)
    monkeypatch.undo()
    assert _steps(wd) == [5, 10]  # the best step outlives the save that followed the restart
    rc, err = _main(wd, capsys)
    assert rc == 0, err
    assert "resumed from step 10" in err
    _assert_same_run(ref, wd)


def test_restart_before_the_first_checkpoint_duplicates_no_record(ref, tmp_path, monkeypatch, capsys):
    """Killed at the first save (records of steps 2 and 4 written, no checkpoint): the re-run logs as the reference."""
    wd = tmp_path / "run"

    def die(*args, **kwargs):
        raise _Killed

    monkeypatch.setattr(checkpoint.Checkpoints, "save", die)
    with pytest.raises(_Killed):
        _main(wd, capsys)
    monkeypatch.undo()
    assert [r["step"] for r in read_metrics(wd / "metrics.jsonl")][:2] == [2, 4]
    assert read_scalars(wd / "tensorboard")
    rc, err = _main(wd, capsys)
    assert rc == 0, err
    _assert_same_run(ref, wd)


def _flip(path: Path) -> None:
    """Inverts the bits of the middle byte of ``path``."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _check_flip(ref: Path, wd: Path, rel: str, capsys) -> None:
    """Flips one byte of ``checkpoints/<rel>`` in a copy of the finished ``ref`` and re-runs it.

    Accepted: one line naming the step and the file, then either a fallback that ends with the
    reference's numbers, or a clean stop (one ``error:`` line, exit 1) with ``summary.json``
    byte-identical. Never a traceback, never other numbers.
    """
    shutil.rmtree(wd, ignore_errors=True)
    shutil.copytree(ref, wd)
    before = (wd / "summary.json").read_bytes()
    _flip(wd / "checkpoints" / rel)
    rc, err = _main(wd, capsys)
    assert "Traceback" not in err, err
    step, name = rel.split("/", 1)
    named = [ln for ln in err.splitlines() if f"checkpoint step {step} is corrupt" in ln]
    assert len(named) == 1, (rel, err)
    if name != checkpoint.MANIFEST:  # a flip in the manifest may name the entry it spoiled instead
        assert f"({name} checksum mismatch)" in named[0], (rel, named)
    if rc == 1:
        errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert errors == named, (rel, err)
        assert (wd / "summary.json").read_bytes() == before, rel
    else:
        assert rc == 0, (rel, err)
        assert "falling back to step 5" in named[0], (rel, named)
        _assert_same_run(ref, wd, logs=False)


def _array_file(step_dir: Path) -> str:
    """The largest file of the state item: array bytes."""
    biggest = max((p for p in (step_dir / "state").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    return biggest.relative_to(step_dir.parent).as_posix()


def test_flipped_bytes_are_caught_sample(ref, tmp_path, capsys):
    """A sample of the sweep: array bytes of the newest step (a fallback) and of the best step (a clean stop)."""
    ckpts = ref / "checkpoints"
    for rel in (_array_file(ckpts / "10"), _array_file(ckpts / "5")):
        _check_flip(ref, tmp_path / "run", rel, capsys)


@pytest.mark.slow
def test_every_flipped_byte_is_caught(ref, tmp_path, capsys):
    """One flipped byte in each file of the best and of the newest checkpoint, one file at a time."""
    ckpts = ref / "checkpoints"
    files = sorted(p.relative_to(ckpts).as_posix() for s in ("5", "10") for p in (ckpts / s).rglob("*") if p.is_file())
    assert len(files) > 20
    for rel in files:
        _check_flip(ref, tmp_path / "run", rel, capsys)


def test_no_step_verifies_stops_cleanly(ref, tmp_path, capsys):
    """Both steps corrupt: one ``error:`` line naming both, exit 1, summary.json and metrics.jsonl untouched."""
    wd = tmp_path / "run"
    shutil.copytree(ref, wd)
    before = {n: (wd / n).read_bytes() for n in ("summary.json", "metrics.jsonl")}
    for step in ("5", "10"):
        _flip(wd / "checkpoints" / _array_file(wd / "checkpoints" / step))
    rc, err = _main(wd, capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 1 and len(lines) == 1, err
    assert lines[0].startswith("error: no checkpoint in"), err
    assert "step 10: state/" in lines[0] and "step 5: state/" in lines[0], err
    assert {n: (wd / n).read_bytes() for n in before} == before


def test_unreadable_step_with_matching_checksums_is_one_line(ref, tmp_path, capsys):
    """A file that orbax cannot read (a truncated array file, re-checksummed) is named in one line, no traceback.

    It is the best step of a finished run here, so the run stops (exit 1) and keeps its summary.json.
    """
    wd = tmp_path / "run"
    shutil.copytree(ref, wd)
    before = (wd / "summary.json").read_bytes()
    path = wd / "checkpoints" / _array_file(wd / "checkpoints" / "5")
    path.write_bytes(path.read_bytes()[:64])
    checkpoint.write_manifest(wd / "checkpoints" / "5", 5)
    rc, err = _main(wd, capsys)
    assert rc == 1 and "Traceback" not in err, err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: checkpoint step 5 is corrupt (unreadable: "), err
    assert errors[0].endswith("; the finished run's summary.json is kept"), err
    assert (wd / "summary.json").read_bytes() == before


def test_corrupt_best_of_an_unfinished_run_evaluates_the_newest_step(ref, tmp_path, capsys):
    """No summary.json yet (killed before it), the best step corrupt: the newest is evaluated, as the summary says."""
    wd = tmp_path / "run"
    shutil.copytree(ref, wd)
    (wd / "summary.json").unlink()
    _flip(wd / "checkpoints" / "5" / "loop" / "metadata")
    rc, err = _main(wd, capsys)
    assert rc == 0 and "Traceback" not in err, err
    named = [ln for ln in err.splitlines() if "checkpoint step 5 is corrupt" in ln]
    assert named == [
        "checkpoint step 5 is corrupt (loop/metadata checksum mismatch); evaluating the newest step, 10, instead"
    ]
    summary = json.loads((wd / "summary.json").read_text())
    assert summary["best_step"] == 10 and summary["checkpoint_fallback"].startswith("best step 5: loop/metadata")


@pytest.mark.slow
def test_checkpoints_from_before_checksums_restore_unverified(ref, tmp_path, capsys):
    """A workdir whose steps have no manifest at all (an older mlcv) resumes; its steps are adopted, in one line."""
    wd = tmp_path / "run"
    shutil.copytree(ref, wd)
    for manifest in (wd / "checkpoints").glob(f"*/{checkpoint.MANIFEST}"):
        manifest.unlink()
    rc, err = _main(wd, capsys)
    assert rc == 0, err
    assert f"checkpoint steps 5, 10 predate checksums: their {checkpoint.MANIFEST} written now" in err
    assert all(checkpoint.verify(wd / "checkpoints" / s) is None for s in ("5", "10"))
    _assert_same_run(ref, wd)


def test_flushed_scalars_are_on_disk_before_close(tmp_path):
    """What a checkpoint covers is in the event file once ``flush()`` returns: a kill after it loses nothing.

    tensorboardX's SummaryWriter queued events for a thread and its flush() did not wait for the queue.
    """
    from mlcv.report.writers import MetricWriter

    writer = MetricWriter(tmp_path)
    for step in range(1, 51):
        writer.write(step, {"train/loss": 1.0 / step, "val/ap": float("nan")})
    writer.flush()
    scalars = read_scalars(tmp_path / "tensorboard")  # read while the writer is open, as after a kill -9
    assert [(s, t) for s, t, _ in scalars] == [(s, "train/loss") for s in range(1, 51)]
    assert scalars[-1][2] == pytest.approx(1.0 / 50)
    writer.close()
    writer.write(51, {"train/loss": 0.5})  # a new file after close, beside the first
    writer.close()
    assert len(list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))) == 2
    assert read_scalars(tmp_path / "tensorboard")[-1][:2] == (51, "train/loss")

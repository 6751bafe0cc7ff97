"""Workdir files are strict JSON and are replaced atomically: a failed write leaves the old file."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from mlcv import workdirs


def _strict(text: str):
    """json.loads that refuses NaN, Infinity and -Infinity, as jq or a browser would."""

    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_values_are_written_as_null(tmp_path, capsys):
    path = tmp_path / "summary.json"
    summary = {
        "test": {"loss": float("nan"), "accuracy": 0.5, "worst": -math.inf},
        "curve": [1.0, float("inf"), np.float32("nan"), np.float64(0.25)],
        "steps": np.int64(7),
        "ok": True,
        "none": None,
    }
    workdirs.write_json(path, summary)
    assert _strict(path.read_text()) == {
        "test": {"loss": None, "accuracy": 0.5, "worst": None},
        "curve": [1.0, None, None, 0.25],
        "steps": 7,
        "ok": True,
        "none": None,
    }
    assert workdirs.non_finite(summary) == ["test.loss", "test.worst", "curve.1", "curve.2"]
    workdirs.warn_non_finite(summary, path)
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"warning: test.loss, test.worst, curve.1, curve.2 not finite (NaN or infinite), written as null in {path}"
    ]
    workdirs.warn_non_finite({"test": {"loss": 0.1}}, path)
    assert capsys.readouterr().err == ""


def test_a_failed_write_leaves_the_old_file_and_names_the_path(tmp_path, monkeypatch):
    """A failure at the rename (as a full disk or a read-only file system would make the write fail)."""
    path = tmp_path / "summary.json"
    workdirs.write_json(path, {"step": 1})

    def full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(workdirs.WorkdirError) as e:
        workdirs.write_json(path, {"step": 2})
    assert str(e.value) == f"cannot write {path}: No space left on device"
    assert isinstance(e.value.__cause__, OSError)
    assert _strict(path.read_text()) == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]  # no temporary file left


def test_a_failed_fsync_leaves_the_old_file(tmp_path, monkeypatch):
    """A write error surfacing at fsync (delayed allocation on a full disk) never reaches the rename."""
    path = tmp_path / "config.json"
    workdirs.write_text(path, "old\n")

    def eio(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", eio)
    with pytest.raises(workdirs.WorkdirError, match=f"^cannot write {path}: Input/output error$"):
        workdirs.write_text(path, "new\n")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_write_into_a_missing_directory_names_the_path(tmp_path):
    path = tmp_path / "gone" / "summary.json"
    with pytest.raises(workdirs.WorkdirError, match=f"^cannot write {path}: No such file or directory$"):
        workdirs.write_json(path, {})


def test_long_lists_of_non_finite_values_are_told_once(tmp_path, capsys):
    path = tmp_path / "summary.json"
    summary = {"test": {"ap_large": float("nan")}, "curve": [float("nan")] * 40 + [0.5], "pair": [float("nan")] * 2}
    workdirs.warn_non_finite(summary, path)
    want = "warning: test.ap_large, curve.* (40 values), pair.0, pair.1 not finite (NaN or infinite), written as null"
    assert capsys.readouterr().err.startswith(want)

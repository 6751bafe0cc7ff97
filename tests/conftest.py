"""Shared fixtures: one TFDS data dir per test session, so tests never touch ~/tensorflow_datasets."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def tfds_data_dir(tmp_path_factory) -> str:
    """Points TFDS (and subprocesses) at a fresh data dir for the session."""
    path = str(tmp_path_factory.mktemp("tfds"))
    old = os.environ.get("TFDS_DATA_DIR")
    os.environ["TFDS_DATA_DIR"] = path
    yield path
    if old is None:
        os.environ.pop("TFDS_DATA_DIR", None)
    else:
        os.environ["TFDS_DATA_DIR"] = old


def launch_cmd(*args: str) -> list[str]:
    """The command line of ``launch.py`` with this interpreter."""
    return [sys.executable, str(ROOT / "launch.py"), *args]

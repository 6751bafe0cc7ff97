"""Test-session set-up: a private TFDS data dir, so tests never touch ~/tensorflow_datasets."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Set at import time: TFDS reads TFDS_DATA_DIR when it is first imported, which
# happens while test modules are collected. Subprocesses inherit it.
_TFDS_DIR = tempfile.mkdtemp(prefix="mlcv-tfds-")
os.environ["TFDS_DATA_DIR"] = _TFDS_DIR
atexit.register(shutil.rmtree, _TFDS_DIR, ignore_errors=True)
# Likewise a private persistent compilation cache, so tests never fill or read the user's.
_CACHE_DIR = tempfile.mkdtemp(prefix="mlcv-jaxcache-")
os.environ["MLCV_COMPILATION_CACHE"] = _CACHE_DIR
atexit.register(shutil.rmtree, _CACHE_DIR, ignore_errors=True)


def launch_cmd(*args: str) -> list[str]:
    """The command line of ``launch.py`` with this interpreter."""
    return [sys.executable, str(ROOT / "launch.py"), *args]

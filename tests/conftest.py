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
# happens while test modules are collected. Subprocesses inherit it. Likewise a
# private persistent compilation cache, so tests never fill or read the user's.
# `make test` runs two pytest-xdist workers; they inherit the controller's
# environment and so share its directories (each dataset is prepared once,
# behind mlcv's preparation lock), and only the process that made them removes them.
if "MLCV_TEST_TFDS_DIR" not in os.environ:
    for _var, _prefix in (("MLCV_TEST_TFDS_DIR", "mlcv-tfds-"), ("MLCV_TEST_JAX_CACHE", "mlcv-jaxcache-")):
        os.environ[_var] = tempfile.mkdtemp(prefix=_prefix)
        atexit.register(shutil.rmtree, os.environ[_var], ignore_errors=True)
os.environ["TFDS_DATA_DIR"] = os.environ["MLCV_TEST_TFDS_DIR"]
os.environ["MLCV_COMPILATION_CACHE"] = os.environ["MLCV_TEST_JAX_CACHE"]

# Tests jit their own closures of the same models and ops again and again; with JAX's persistent cache (keyed
# by the compiled program) each compiles once a session, in the test processes as in the launches: the CI
# suite takes about a fifth less time.
from mlcv.orchestration.cli import enable_compilation_cache  # noqa: E402 after the environment is set

enable_compilation_cache()


def launch_cmd(*args: str) -> list[str]:
    """The command line of ``launch.py`` with this interpreter."""
    return [sys.executable, str(ROOT / "launch.py"), *args]


def padded_batches(arrays: dict, rng, batch_size: int) -> list[dict]:
    """Equal-length arrays in batches of ``batch_size``; the last padded with random rows of ``mask`` 0, so an
    evaluator that ignores the mask gets it wrong."""
    import numpy as np

    n = len(next(iter(arrays.values())))
    out = []
    for start in range(0, n, batch_size):
        real = min(batch_size, n - start)
        batch = {
            k: np.concatenate([a[start : start + real], a[rng.integers(0, n, batch_size - real)]])
            for k, a in arrays.items()
        }
        batch["mask"] = np.r_[np.ones(real), np.zeros(batch_size - real)].astype(np.float32)
        out.append(batch)
    return out

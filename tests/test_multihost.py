"""Two processes over loopback (jax.distributed, gloo) train like one process with the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess

import jax
import numpy as np
from conftest import ROOT, launch_cmd

from mlcv.report import read_metrics
from mlcv.training.checkpoint import read_state

ARGS = [
    "--config=experiments/digits_cnn.py:runlocal",
    "--config.total_steps=6",
    "--config.eval_every_steps=6",
    "--config.log_every_steps=1",
    "--config.tensorboard=False",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one(tmp_path):
    """Both processes end with identical parameters, equal (1e-5) to a single-process run's, loss by loss."""
    one = tmp_path / "one"
    proc = subprocess.run(launch_cmd(*ARGS, f"--workdir={one}"), cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]

    two = tmp_path / "two"
    port = _free_port()
    procs = []
    for pid in range(2):
        env = dict(
            os.environ, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(pid)
        )
        procs.append(
            subprocess.Popen(
                launch_cmd(*ARGS, f"--workdir={two}"),
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]

    summary = json.loads((two / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["devices"] == 2
    assert summary["replicas_identical"] is True  # checked across processes by multihost_utils.assert_equal
    la = [r["train/loss"] for r in read_metrics(one / "metrics.jsonl") if "train/loss" in r]
    lb = [r["train/loss"] for r in read_metrics(two / "metrics.jsonl") if "train/loss" in r]
    assert len(la) == 6
    np.testing.assert_allclose(lb, la, atol=1e-5)
    sa, sb = read_state(one / "checkpoints" / "6"), read_state(two / "checkpoints" / "6")
    for key in ("params", "batch_stats"):
        for a, b in zip(jax.tree.leaves(sa[key]), jax.tree.leaves(sb[key]), strict=True):
            np.testing.assert_allclose(b, a, atol=1e-5)

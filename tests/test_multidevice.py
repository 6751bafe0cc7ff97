"""The same 6-step run on 8 simulated CPU devices equals the 1-device run to 1e-5; a full run drifts (README)."""

from __future__ import annotations

import json
import os
import subprocess

import jax
import numpy as np
from conftest import ROOT, launch_cmd

from mlcv.report import read_metrics
from mlcv.training.checkpoint import read_state


def _run(workdir, devices: int) -> None:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    args = [
        "--config=experiments/digits_cnn.py:runlocal",
        f"--workdir={workdir}",
        "--config.total_steps=6",
        "--config.eval_every_steps=6",
        "--config.log_every_steps=1",
        "--config.model.dropout=0.3",
        # Plain SGD: Adam divides by sqrt(v), which turns the last-bit differences of a sharded
        # reduction into 1e-5 differences of parameters whose gradients are near zero.
        "--config.optim.name=sgd",
        "--config.optim.lr=0.1",
    ]
    proc = subprocess.run(launch_cmd(*args), cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((workdir / "summary.json").read_text())["devices"] == devices


def test_eight_devices_match_one(tmp_path):
    """Per-step losses and the final parameters and BN statistics agree across device counts."""
    one, eight = tmp_path / "one", tmp_path / "eight"
    _run(one, 1)
    _run(eight, 8)
    la = [r["train/loss"] for r in read_metrics(one / "metrics.jsonl") if "train/loss" in r]
    lb = [r["train/loss"] for r in read_metrics(eight / "metrics.jsonl") if "train/loss" in r]
    assert len(la) == 6
    np.testing.assert_allclose(lb, la, atol=1e-5)
    sa = read_state(one / "checkpoints" / "6")
    sb = read_state(eight / "checkpoints" / "6")
    for key in ("params", "batch_stats"):
        flat_a = jax.tree_util.tree_leaves_with_path(sa[key])
        flat_b = jax.tree.leaves(sb[key])
        assert len(flat_a) == len(flat_b) > 0
        for (path, a), b in zip(flat_a, flat_b, strict=True):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-5, err_msg=jax.tree_util.keystr(path))

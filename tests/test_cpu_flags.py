"""mlcv's choice of XLA CPU convolution path (MLCV_CPU_CONVOLUTIONS) and its error on a bad value."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT, launch_cmd

import mlcv


def test_eigen_is_the_default_and_added_to_existing_flags():
    assert mlcv.cpu_convolution_flags({}) == mlcv.EIGEN_CONVOLUTIONS
    flags = mlcv.cpu_convolution_flags({"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
    assert flags == f"--xla_force_host_platform_device_count=8 {mlcv.EIGEN_CONVOLUTIONS}"


def test_xla_keeps_xla_default_and_an_explicit_choice_wins():
    assert mlcv.cpu_convolution_flags({"MLCV_CPU_CONVOLUTIONS": "xla", "XLA_FLAGS": "--a"}) == "--a"
    own = "--xla_cpu_experimental_ynn_fusion_type=individual_convolution"
    assert mlcv.cpu_convolution_flags({"XLA_FLAGS": own}) == own
    with pytest.raises(ValueError, match="MLCV_CPU_CONVOLUTIONS"):
        mlcv.cpu_convolution_flags({"MLCV_CPU_CONVOLUTIONS": "onednn"})


def test_import_sets_the_flag_before_the_backend_starts():
    code = "import os, mlcv, jax; jax.numpy.ones(1).block_until_ready(); print(os.environ['XLA_FLAGS'])"
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "MLCV_CPU_CONVOLUTIONS")}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == mlcv.EIGEN_CONVOLUTIONS


def test_bad_value_is_one_error_line_and_exit_2(tmp_path):
    env = dict(os.environ, MLCV_CPU_CONVOLUTIONS="fast")
    out = subprocess.run(launch_cmd("--workdir", str(tmp_path / "w")), env=env, capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip() == "error: MLCV_CPU_CONVOLUTIONS must be 'eigen' or 'xla', got 'fast'"
    assert not (tmp_path / "w").exists()

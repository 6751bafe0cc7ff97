"""Detectors through launch.py: the workdir of a run, and bad input (config keys, box padding)."""

from __future__ import annotations

import json
import subprocess

from conftest import ROOT, launch_cmd

CONFIG = str(ROOT / "experiments" / "scenes_centernet.py") + ":runlocal"


def test_centernet_runlocal_logs_dropped_boxes_and_draws_detections(tmp_path):
    """pad_boxes(2) on scenes of up to 6 digits: the run goes on, the dropped boxes are counted in its log."""
    workdir = tmp_path / "run"
    pp = "keep('image', 'boxes', 'box_labels')|pad_boxes(2)|normalize"
    cmd = launch_cmd("--config", CONFIG, "--workdir", str(workdir), f"--config.data.pp_train={pp}")
    out = subprocess.run([*cmd, f"--config.data.pp_eval={pp}"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "test ap" in out.stdout
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    dropped = [r["train/boxes_dropped"] for r in records if "train/boxes_dropped" in r]
    assert dropped and all(d > 0 for d in dropped)  # batches of 16 scenes with 3.5 digits on average
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["test_boxes_dropped"] > 0
    assert 0.0 <= summary["test"]["ap"] <= 1.0
    assert (workdir / "plots" / "detections_test.png").stat().st_size > 0
    assert (workdir / "plots" / "precision_recall_test.png").stat().st_size > 0


def test_unpadded_boxes_fail_naming_the_key_before_writing(tmp_path):
    workdir = tmp_path / "run"
    cmd = launch_cmd("--config", CONFIG, "--workdir", str(workdir), "--config.data.pp_train=normalize")
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: config.data.pp_train = 'normalize' must pad the boxes")
    assert "Traceback" not in out.stderr
    assert not (workdir / "config.json").exists()

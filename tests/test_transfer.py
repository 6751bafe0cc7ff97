"""Transfer learning (config.init_from): what is copied from a finished run and what starts fresh."""

from __future__ import annotations

from pathlib import Path

import ml_collections
import numpy as np
import pytest

from mlcv.config import ConfigError
from mlcv.training import transfer
from mlcv.training.runs import load_run


def test_merge_copies_leaves_of_equal_path_and_shape_only():
    fresh = {
        "params": {
            "conv": {"kernel": np.zeros((3, 3, 3, 4))},
            "block": {"bias": np.zeros(4)},
            "head": np.zeros((8, 14)),
        },
        "batch_stats": {"bn": {"mean": np.zeros(4)}},
    }
    source = {
        "params": {"conv": {"kernel": np.ones((3, 3, 1, 4))}, "block": {"bias": np.ones(4)}, "head": np.ones((8, 10))},
        "batch_stats": {"bn": {"mean": np.full(4, 2.0)}},
    }
    merged, copied, kept = transfer.merge(fresh, source)
    # The first convolution saw grey images (1 channel), the head had 10 outputs: both start fresh.
    assert copied == ["['batch_stats']['bn']['mean']", "['params']['block']['bias']"]
    assert kept == ["['params']['conv']['kernel']", "['params']['head']"]
    np.testing.assert_array_equal(merged["params"]["block"]["bias"], np.ones(4))
    np.testing.assert_array_equal(merged["batch_stats"]["bn"]["mean"], np.full(4, 2.0))
    np.testing.assert_array_equal(merged["params"]["head"], np.zeros((8, 14)))
    source_dir = transfer.InitSource(Path("runs/cls"), 500, source)
    line = transfer.describe(source_dir, copied, kept)
    assert (
        line
        == "init_from runs/cls step 500: copied 2 of 4 arrays; fresh: ['params']['conv']['kernel'], ['params']['head']"
    )


def test_load_names_the_key_of_a_missing_run(tmp_path):
    config = ml_collections.ConfigDict({"init_from": {"workdir": str(tmp_path / "nope"), "step": None}})
    with pytest.raises(ConfigError, match=r"config.init_from.workdir: .*nope is not a run directory"):
        transfer.load(config, load_run)
    assert transfer.load(ml_collections.ConfigDict({"init_from": {"workdir": "", "step": None}}), load_run) is None
    assert transfer.load(ml_collections.ConfigDict({}), load_run) is None


def test_merge_into_a_submodule():
    """A classifier's ResNet lands under the detector's ``backbone`` module; its own head matches nothing there."""
    fresh = {
        "params": {"backbone": {"stem": {"kernel": np.zeros((3, 3))}}, "head": {"kernel": np.zeros((2, 2))}},
        "batch_stats": {"backbone": {"bn": {"mean": np.zeros(3)}}},
    }
    source = {
        "params": {"stem": {"kernel": np.ones((3, 3))}, "head": {"kernel": np.ones((2, 2))}},
        "batch_stats": {"bn": {"mean": np.ones(3)}},
    }
    merged, copied, kept = transfer.merge(fresh, source, into="backbone")
    assert copied == ["['batch_stats']['backbone']['bn']['mean']", "['params']['backbone']['stem']['kernel']"]
    assert kept == ["['params']['head']['kernel']"]
    np.testing.assert_array_equal(merged["params"]["head"]["kernel"], np.zeros((2, 2)))
    # A nested module path, a/b.
    deep = {"params": {"a": {"b": {"stem": {"kernel": np.zeros((3, 3))}}}}}
    merged, copied, _ = transfer.merge(deep, {"params": source["params"]}, into="a/b")
    assert copied == ["['params']['a']['b']['stem']['kernel']"]

"""The four recipes of the README's "Architecture" section, run as written, then trained with."""

from __future__ import annotations

import re

import ml_collections
import numpy as np
import pytest

import mlcv
from experiments import digits_cnn
from mlcv import data, evaluators, tasks
from mlcv.data import ops
from tests.conftest import ROOT


def _recipes() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Architecture") : text.index("## Tests and lint")]
    out = {}
    for part in section.split("### Recipe: ")[1:]:
        title = part.splitlines()[0].strip()
        blocks = re.findall(r"```python\n(.*?)```", part, flags=re.S)
        assert len(blocks) == 1, title
        out[title] = blocks[0]
    return out


@pytest.fixture(scope="module")
def recipes():
    """Executes the four recipes once, each in its own namespace, as a user's module would."""
    found = _recipes()
    assert sorted(found) == ["a dataset", "a preprocessing op", "a task", "an evaluator"]
    spaces = {}
    for title, code in found.items():
        spaces[title] = {"__name__": f"recipe_{title.split()[-1]}"}
        exec(compile(code, f"README recipe: {title}", "exec"), spaces[title])  # noqa: S102 - the README's own code
    return spaces


def _small(config: ml_collections.ConfigDict, steps: int = 8) -> ml_collections.ConfigDict:
    config.total_steps = steps
    config.eval_every_steps = steps // 2
    config.log_every_steps = steps // 2
    config.tensorboard = False
    config.model.features = (8, 16)
    config.model.dense = 16
    return config


def test_op_recipe(recipes):
    """invert(16) maps 0 -> 16 and 16 -> 0 and declares that it moves the image only."""
    assert "invert" in ops.names() and ops.moves("invert") == ("image",)
    out = ops.parse("invert(16)")({"image": np.array([[[0], [16]]], np.uint8), "label": 3}, np.random.default_rng(0))
    np.testing.assert_array_equal(out["image"][..., 0], [[16.0, 0.0]])
    assert out["label"] == 3


def test_dataset_and_evaluator_recipes_train(recipes, tmp_path):
    """A classifier trains on the recipe dataset, through the recipe op, with the recipe evaluator beside its own."""
    assert "confidence" in evaluators.names() and "random_shapes" in data.builtin_names()
    meta = data.meta(data.get("random_shapes"))
    assert meta.num_classes == 4 and meta.class_names == ("rectangle", "circle", "triangle", "ellipse")
    config = _small(digits_cnn.get_config("runlocal"))
    config.data.name = "random_shapes"
    config.data.pp_train = config.data.pp_eval = "invert|normalize"
    config.evals = {
        "loss": {"type": "loss"},
        "classification": {"type": "classification"},
        "confidence": {"type": "confidence"},
    }
    summary = mlcv.run(config, tmp_path / "shapes")
    for split in ("validation", "test"):
        assert 0.25 <= summary[split]["confidence"] <= 1.0  # four classes: never below a uniform guess
        assert set(summary[split]) == {"loss", "accuracy", "mean_class_accuracy", "confidence"}
    assert np.sum(summary["test_confusion_matrix"]) == 100  # the recipe's 100 test shapes


def test_task_recipe_trains(recipes, tmp_path):
    """The regression task runs on the one loop: squared error falls, its headline is the loss."""
    assert "digit_value" in tasks.names()
    config = _small(digits_cnn.get_config("runlocal"), steps=60)
    config.task = "digit_value"
    config.early_stopping.metric = "loss"
    config.early_stopping.mode = "min"
    summary = mlcv.run(config, tmp_path / "value")
    assert summary["headline_metric"] == {"name": "loss", "mode": "min", "percent": False}
    # Predicting the mean digit (4.5) everywhere scores 8.25; the trained net is far better.
    assert summary["test"]["loss"] < 8.25
    assert summary["headline"].startswith("test loss ")

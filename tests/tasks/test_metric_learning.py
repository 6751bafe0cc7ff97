"""The metric-learning task: the embedding network, bad configs named by key, and whole runs on open-set digits."""

from __future__ import annotations

import json
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import launch_cmd

import mlcv
from experiments import digits_metric_learning
from mlcv import data, models, tasks
from mlcv.config import ConfigError
from mlcv.models.embedding import EmbeddingNet
from mlcv.orchestration import enrolment, sweep


def _config(method: str = "triplet_semi_hard", **overrides):
    config = digits_metric_learning.get_config(f"method={method},runlocal")
    return sweep.apply(config, overrides)


def _task(config):
    return tasks.get(config.task)(config, data.meta(data.get(config.data.name)))


def test_embedding_is_unit_length_and_the_head_is_the_projection():
    """Any zoo classifier built with num_classes=dim is the backbone and projection; the embedding has norm 1."""
    net = EmbeddingNet(models.get("mlp", num_classes=6, hidden=(16,)), num_classes=3, head="linear")
    x = jax.random.normal(jax.random.PRNGKey(0), (5, 8, 8, 1))
    variables = net.init(jax.random.PRNGKey(1), x)
    out = net.apply(variables, x)
    np.testing.assert_allclose(np.linalg.norm(out["embedding"], axis=-1), 1.0, rtol=1e-6)
    z = np.asarray(out["features"])
    np.testing.assert_allclose(out["embedding"], z / np.linalg.norm(z, axis=-1)[:, None], rtol=1e-6)
    assert out["logits"].shape == (5, 3)
    cosine = EmbeddingNet(models.get("mlp", num_classes=6, hidden=(16,)), num_classes=3, head="cosine", relu=True)
    out = cosine.apply(cosine.init(jax.random.PRNGKey(1), x), x)
    assert out["templates"].shape == (6, 3) and float(jnp.min(out["features"])) >= 0.0


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"data.identities_per_batch": 1}, "config.data.identities_per_batch"),  # a batch with a single identity
        ({"loss.name": "lifted"}, "config.loss.name"),
        ({"loss.mining": "hardest"}, "config.loss.mining"),
        ({"embedding.dim": 0}, "config.embedding.dim"),
    ],
)
def test_bad_configs_name_their_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        _task(_config(**overrides))


def test_k_larger_than_a_class_is_refused_before_anything_is_written(tmp_path):
    """Digits 0-4 have about 144 training images each: K = 200 cannot be drawn; the run names the key."""
    config = _config(**{"data.identities_per_batch": 2, "data.images_per_identity": 200, "data.batch_size": 400})
    with pytest.raises(ConfigError, match=r"images_per_identity"):
        mlcv.run(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused in the set-up, before config.json or anything else


@pytest.mark.parametrize("method", ["triplet_semi_hard", "deepface"])
def test_a_run_reports_retrieval_and_verification_on_unseen_identities(tmp_path, method):
    """The whole flow on digits 0-4 -> 5-9: P x K batches, the test split's identities never trained on, the
    verification threshold fitted on validation (DeepFace's weights on the training split) and used on test."""
    summary = mlcv.run(_config(method), tmp_path / method)
    test = summary["test"]
    for name in ("recall_at_1", "recall_at_8", "map_at_r", "r_precision", "knn_accuracy", "roc_auc"):
        assert 0.0 <= test[name] <= 1.0, name
    assert test["recall_at_1"] <= test["recall_at_8"]
    assert summary["headline_metric"]["name"] == "recall_at_1"
    assert summary["test_threshold_from"] == "validation"
    if method == "deepface":
        assert "train" in json.dumps(summary["test_deepface_fit"])
    records = [json.loads(line) for line in (tmp_path / method / "metrics.jsonl").read_text().splitlines()]
    if method != "deepface":
        assert any("train/active_fraction" in r for r in records)
        # The course's enrolment: digit 9 cannot be named before it is enrolled, and is after, with the same weights.
        out = enrolment.run(str(tmp_path / method), enrol=5)
        assert out["new_identity"] == 9 and out["before"]["new_identity_probes_recognised"] == 0.0
        assert out["after"]["new_identity_probes_recognised"] > 0.5
        assert out["after"]["gallery_images"] == out["before"]["gallery_images"] + 5
        assert (tmp_path / method / "enrolment.json").is_file()


def test_the_catalogue_recipe_runs_on_mock_cars196(tmp_path):
    """experiments/retrieval_catalogue.py (runlocal) through the TFDS catalogue path: Cars196's class split, P x K
    batches, retrieval over the 98 test classes (tfds.testing.mock_data: random images and labels)."""
    tfds = pytest.importorskip("tensorflow_datasets")
    from experiments import retrieval_catalogue

    config = retrieval_catalogue.get_config("dataset=cars,runlocal")
    with tfds.testing.mock_data(num_examples=1500):
        summary = mlcv.run(config, tmp_path / "cars")
    assert 0.0 <= summary["test"]["recall_at_1"] <= 1.0
    assert summary["best_step"] == 2


def test_a_single_identity_batch_from_the_command_line_is_one_error_line(tmp_path):
    """Bad input on the command line: exit status 2, one ``error:`` line naming the key, no traceback, no workdir."""
    config = "experiments/digits_metric_learning.py:method=triplet_semi_hard,runlocal"
    workdir = tmp_path / "run"
    args = ["--config", config, "--config.data.identities_per_batch=1", "--workdir", str(workdir)]
    done = subprocess.run(launch_cmd(*args), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "config.data.identities_per_batch" in errors[0]
    assert "Traceback" not in done.stderr and not workdir.exists()


def test_training_labels_outside_the_heads_classes_raise_naming_the_dataset(tmp_path):
    """A softmax head over 3 identities cannot train on digits 0-4; the test digits 5-9 are not checked (open set)."""
    with pytest.raises(ConfigError, match=r"digits_open_set.*label"):
        mlcv.run(_config("softmax", **{"embedding.train_classes": 3}), tmp_path / "run")

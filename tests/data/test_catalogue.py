"""The TFDS catalogue path (mnist, cifar10, ...) through the same code, on tfds.testing.mock_data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

import mlcv
from experiments import digits_cnn
from mlcv import data


@pytest.mark.parametrize("name,shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_catalogue_spec_and_source(name, shape):
    """A catalogue name resolves to a spec with train/validation/test splits and a readable source."""
    spec = data.get(name)
    assert not spec.builtin
    assert spec.splits == {"train": "train[:90%]", "validation": "train[90%:]", "test": "test"}
    with tfds.testing.mock_data(num_examples=12):
        src = data.source(spec, spec.splits["train"])
        assert src[0]["image"].shape == shape
        assert data.num_classes(src) == 10


def test_training_on_mock_mnist(tmp_path):
    """The whole loop runs on a catalogue dataset: 28x28 inputs reach the CNN, test metrics come back."""
    config = digits_cnn.get_config("runlocal")
    config.data.name = "mnist"
    config.data.pp_train = "random_crop(28, pad=2)|flip_lr(p=0.0)|normalize"
    config.data.batch_size = 16
    config.data.eval_batch_size = 32
    config.total_steps = 4
    config.eval_every_steps = 2
    with tfds.testing.mock_data(num_examples=64):
        summary = mlcv.run(config, tmp_path / "mnist")
    assert summary["step"] == 4
    assert sum(map(sum, summary["test_confusion_matrix"])) == 64  # every mock test example once
    assert json.loads((tmp_path / "mnist" / "config.json").read_text())["data"]["name"] == "mnist"


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "cifar100", "imagenette", "imagenet2012"])
def test_known_catalogue_datasets_read_every_split(name):
    """Each catalogue dataset with known statistics reads its train / validation / test roles on mock data."""
    spec = data.get(name)
    channels = len(np.atleast_1d(spec.op_defaults["normalize"]["mean"]))
    with tfds.testing.mock_data(num_examples=6):
        for role in ("train", "validation", "test"):
            src = data.source(spec, spec.splits[role])
            image = src[0]["image"]
            assert image.ndim == 3 and image.shape[-1] == channels, (role, image.shape)

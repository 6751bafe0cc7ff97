"""Datasets by name: the built-in offline datasets and the TFDS catalogue.

TFDS is the storage: a built-in dataset is a TFDS builder prepared once into
the TFDS data dir as ArrayRecord files, and every dataset, built-in or from
the catalogue, is read back as a random-access ``tfds`` data source that the
grain pipelines of :mod:`mlcv.data.pipeline` index into.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from mlcv.config import ConfigError


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What the code needs to know of a dataset besides its records.

    Attributes:
      name: the registry name (``digits``) or the TFDS catalogue name.
      splits: TFDS split strings for the roles ``train``, ``validation`` and
        ``test``; the validation split is a slice of the training data.
      op_defaults: default arguments of preprocessing ops for this dataset,
        e.g. the pixel mean and std used by a bare ``normalize``.
      builtin: True for datasets whose builder ships with mlcv.
    """

    name: str
    splits: dict[str, str]
    op_defaults: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    builtin: bool = False


# Built-in uint8 images without published statistics: map them to [-1, 1].
_UINT8_STATS_BUILTIN = {"normalize": {"mean": 127.5, "std": 127.5}}
# Pixel statistics of the digits train split (values 0..16).
_DIGITS_STATS = {"normalize": {"mean": 4.88, "std": 6.02}}

_BUILTIN: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(
        name="digits",
        splits={"train": "train[:1257]", "validation": "train[1257:]", "test": "test"},
        op_defaults=_DIGITS_STATS,
        builtin=True,
    ),
    # scikit-image's lfw_subset: 100 faces and 100 non-faces, 25x25 grey; label 1 is a face.
    "faces": DatasetSpec(
        name="faces",
        splits={"train": "train", "validation": "validation", "test": "test"},
        op_defaults=_UINT8_STATS_BUILTIN,
        builtin=True,
    ),
}

# Catalogue datasets stored as uint8 images: map them to [-1, 1] unless their statistics are known.
_UINT8_STATS = {"normalize": {"mean": 127.5, "std": 127.5}}

_IMAGENET_STATS = {"normalize": {"mean": (123.675, 116.28, 103.53), "std": (58.395, 57.12, 57.375)}}
_HOLD_OUT_10 = {"train": "train[:90%]", "validation": "train[90%:]", "test": "test"}

# Per-channel pixel statistics of the training splits (the usual published values, in 0-255 units) and the
# role of each split. Datasets without a labelled test split are tested on their validation split, and
# their validation split for model selection is carved out of training data.
_CATALOGUE: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec("mnist", _HOLD_OUT_10, {"normalize": {"mean": 33.32, "std": 78.57}}),
    "fashion_mnist": DatasetSpec("fashion_mnist", _HOLD_OUT_10, {"normalize": {"mean": 72.94, "std": 90.02}}),
    "cifar10": DatasetSpec(
        "cifar10", _HOLD_OUT_10, {"normalize": {"mean": (125.31, 122.95, 113.87), "std": (62.99, 62.09, 66.70)}}
    ),
    "cifar100": DatasetSpec(
        "cifar100", _HOLD_OUT_10, {"normalize": {"mean": (129.30, 124.07, 112.43), "std": (68.17, 65.39, 70.42)}}
    ),
    "imagenette": DatasetSpec(
        "imagenette", {"train": "train[:95%]", "validation": "train[95%:]", "test": "validation"}, _IMAGENET_STATS
    ),
    # Manual download: TFDS prepares it from the ILSVRC2012 tar files placed in its manual_dir. 10,009
    # training images (0.78 %) are held out for model selection; the official validation set is the test.
    "imagenet2012": DatasetSpec(
        "imagenet2012", {"train": "train[10009:]", "validation": "train[:10009]", "test": "validation"}, _IMAGENET_STATS
    ),
}


def builtin_names() -> list[str]:
    """Names of the datasets that need no download."""
    return sorted(_BUILTIN)


def get(name: str) -> DatasetSpec:
    """Returns the spec of a built-in dataset or of a TFDS catalogue dataset.

    Raises:
      ConfigError: ``name`` is neither built in nor in the TFDS catalogue.
    """
    if name in _BUILTIN:
        return _BUILTIN[name]
    base = name.split(":")[0].split("/")[0]  # "mnist:3.0.1" is mnist at a pinned version
    if base in _CATALOGUE:
        return dataclasses.replace(_CATALOGUE[base], name=name)
    import tensorflow_datasets as tfds

    try:
        # builder_cls only imports the one builder module; list_builders()
        # would import TensorFlow and probe the network.
        tfds.builder_cls(name.split(":")[0].split("/")[0])
    except tfds.core.registered.DatasetNotFoundError:
        raise ConfigError(
            f"unknown dataset {name!r} (config.data.name): not a built-in dataset "
            f"({', '.join(builtin_names())}) nor a TFDS catalogue name"
        ) from None
    return DatasetSpec(
        name=name,
        splits={"train": "train[:90%]", "validation": "train[90%:]", "test": "test"},
        op_defaults=_UINT8_STATS,
    )


def source(spec: DatasetSpec, split: str, *, data_dir: str | None = None, download: bool = True):
    """A random-access data source of one TFDS split (prepared on first use)."""
    import tensorflow_datasets as tfds

    if spec.builtin:
        builder = _builder(spec.name, data_dir)
        if not builder.is_prepared():
            builder.download_and_prepare(file_format="array_record")
        return builder.as_data_source(split=split)
    try:
        return tfds.data_source(spec.name, split=split, data_dir=data_dir, download=download)
    except Exception as e:  # TFDS raises many types for "not there / cannot fetch"
        raise ConfigError(
            f"cannot load TFDS dataset {spec.name!r} split {split!r} (config.data.name / config.data.data_dir): {e}"
        ) from None


def _builder(name: str, data_dir: str | None):
    # Imported here so that listing names never pays for TFDS builders.
    module, cls = _BUILDERS[name].split(":")
    return getattr(importlib.import_module(module), cls)(data_dir=data_dir, file_format="array_record")


# Imported on use so that listing names never pays for TFDS builders.
_BUILDERS = {"digits": "mlcv.data.digits:Digits", "faces": "mlcv.data.faces:Faces"}


def num_classes(src, label_key: str = "label") -> int:
    """Number of classes of a TFDS data source's ClassLabel feature."""
    return int(src.dataset_info.features[label_key].num_classes)


def load_arrays(name: str, role: str, *, data_dir: str | None = None, split: str | None = None) -> dict[str, Any]:
    """Every record of one split as stacked numpy arrays, by feature name (``image``, ``label``, ...).

    For methods that see a whole split at once (kNN, k-means, AdaBoost); ``role``
    is ``train``, ``validation`` or ``test`` and picks the dataset's split for that
    role unless ``split`` names one.
    """
    import numpy as np

    spec = get(name)
    src = source(spec, split or spec.splits[role], data_dir=data_dir)
    # Item by item: the sources tfds.testing.mock_data builds have no working __getitems__.
    records = [src[i] for i in range(len(src))]
    return {key: np.stack([np.asarray(r[key]) for r in records]) for key in records[0]} if records else {}

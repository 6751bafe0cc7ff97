"""What the registry holds per dataset: :class:`DatasetSpec`, its split strings by role (:class:`Splits`), and the
pixel statistics that several specs share.

Apart from :mod:`mlcv.data.registry` so that the modules declaring datasets (:mod:`mlcv.data.open_set`) and the
registry that collects them import it without importing each other.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mlcv.config import ConfigError
from mlcv.data.features import Feature

ROLES = ("train", "validation", "test")

# Per-channel ImageNet statistics in 0-255 units: the usual normalization of natural RGB photographs.
IMAGENET_STATS = {"normalize": {"mean": (123.675, 116.28, 103.53), "std": (58.395, 57.12, 57.375)}}
# uint8 images without known statistics (built-in or from the catalogue): map them to [-1, 1].
UINT8_STATS = {"normalize": {"mean": 127.5, "std": 127.5}}


class Splits(dict):
    """A dataset's TFDS split string by role; a role the dataset lacks raises ConfigError, not KeyError."""

    def __init__(self, dataset: str, splits: dict[str, str]):
        super().__init__(splits)
        self.dataset = dataset

    def __missing__(self, role: str) -> str:
        raise ConfigError(
            f"dataset {self.dataset!r} has no {role!r} split (config.data.name / config.data.{role}_split): "
            f"it has only {', '.join(self) or 'none'}"
        )

    def __reduce__(self):  # pickles (grain workers, copies) with its dataset name
        return (Splits, (self.dataset, dict(self)))


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What the code needs to know of a dataset besides its records.

    Attributes:
      name: the registry name (``digits``) or the TFDS catalogue name.
      splits: TFDS split strings by role (``train``, ``validation``, ``test``); a validation split
        is a slice of the training data. A dataset may lack roles (``motorcycle`` is test-only):
        ``splits[role]`` then raises ConfigError naming the dataset and the role. A split string may carry
        class-filter options after ``|`` (``"train+test|classes=0:100"``, see :mod:`mlcv.data.class_filter`).
      op_defaults: default arguments of preprocessing ops for this dataset,
        e.g. the pixel mean and std used by a bare ``normalize``.
      builtin: True for datasets whose builder ships with mlcv.
      features: the records' keys and what they hold, declared so that shapes and classes are known
        without preparing the data (see :func:`~mlcv.data.registry.meta`); empty for catalogue datasets, whose
        TFDS ``dataset_info`` says it, but for the keys that their decode op adds (see ``decoded``).
      decoded: for a catalogue dataset whose records reach the pp string changed (by a decode op such as
        ``decode_detection``, or by the class filter's name-to-id mapping): the contract keys by the TFDS feature
        each comes from. :func:`~mlcv.data.registry.meta` then describes these keys with the TFDS features' shapes
        and classes, plus ``features``.
    """

    name: str
    splits: dict[str, str]
    op_defaults: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    builtin: bool = False
    features: dict[str, Feature] = dataclasses.field(default_factory=dict)
    decoded: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "splits", Splits(self.name, dict(self.splits)))

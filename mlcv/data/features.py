"""What a dataset's records hold, declared without reading them: :class:`Feature` and :class:`DatasetMeta`.

A built-in dataset declares its features in its :class:`~mlcv.data.registry.DatasetSpec`, so a model
summary or a task learns shapes and classes without preparing any data; a TFDS catalogue dataset's
features are read from its ``dataset_info`` (:func:`from_tfds`). Feature names are the keys of the
data contract that the preprocessing ops move (``image``, ``label``, ``segmentation``, ``image_right``,
``disparity`` ...); the ``kind`` says what a key's values mean, so several keys can share one kind
(``disparity`` and ``disparity_right``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

KINDS = (
    "image",  # pixels of the (left) view: [H, W, C]
    "label",  # one class index per example: []
    "boxes",  # [N, 4] boxes of one example
    "box_labels",  # [N] class of each box
    "masks",  # binary masks: [N, H, W] of instances, or [H, W] validity (``disparity_mask``: True = ground truth)
    "segmentation",  # a class index per pixel: [H, W]
    "disparity",  # x-distance in pixels to the matching pixel of the other view: [H, W]
    "image_right",  # the right view of a stereo pair: [H, W, C]
    "identity",  # who or what an example is: a face's person, an object instance, a record's id
    "depth",  # a depth map target in metres: [H, W]
    "flow",  # (dx, dy) in pixels from a pixel of the first frame to its position in the next: [H, W, 2]
    "calibration",  # a camera constant of every record (focal length in pixels, stereo baseline): []
)

# The keys whose class count is a dataset's num_classes, in order of preference.
_MAIN_TARGETS = ("label", "segmentation")


@dataclasses.dataclass(frozen=True)
class Feature:
    """One key of a dataset's records.

    Attributes:
      kind: what the values mean, one of :data:`KINDS`.
      shape: the shape of one record's array; ``None`` for a dimension that varies between records.
      dtype: a NumPy dtype name (``uint8``, ``float32``, ``bool``, ``int64``).
      num_classes: for class-valued kinds (``label``, ``segmentation``, ``box_labels``): how many.
      class_names: the names of the classes, index by index, when known.
    """

    kind: str
    shape: tuple[int | None, ...]
    dtype: str
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Feature kind must be one of {KINDS}, got {self.kind!r}")
        object.__setattr__(self, "shape", tuple(None if d is None else int(d) for d in self.shape))
        if self.class_names is not None:
            names = tuple(str(n) for n in self.class_names)
            object.__setattr__(self, "class_names", names)
            if self.num_classes is None:
                object.__setattr__(self, "num_classes", len(names))
            elif self.num_classes != len(names):
                raise ValueError(f"Feature: {len(names)} class_names for num_classes={self.num_classes}")


@dataclasses.dataclass(frozen=True)
class DatasetMeta:
    """What a model or a task needs to know of a dataset's records, without reading them.

    Attributes:
      features: every record key and its :class:`Feature`.
      num_classes: the class count of the main target (``label``, else ``segmentation``); None without one.
      class_names: that target's class names; empty when unknown (then ``num_classes`` may still be set).
      image_shape: the shape of ``image`` (None entries for varying sizes); None for records without one.
    """

    features: dict[str, Feature]
    num_classes: int | None
    class_names: tuple[str, ...]
    image_shape: tuple[int | None, ...] | None


def from_features(features: Mapping[str, Feature]) -> DatasetMeta:
    """The :class:`DatasetMeta` of records with these features."""
    target = next((features[k] for k in _MAIN_TARGETS if k in features), None)
    image = features.get("image")
    return DatasetMeta(
        features=dict(features),
        num_classes=None if target is None else target.num_classes,
        class_names=tuple(target.class_names or ()) if target is not None else (),
        image_shape=None if image is None else image.shape,
    )


def _kind(name: str, in_sequence: bool) -> str:
    """The kind of a TFDS feature by its name (the last part of its key): the name itself if it is a kind."""
    if in_sequence and name in ("bbox", "boxes"):
        return "boxes"
    if in_sequence and name in ("label", "labels"):
        return "box_labels"
    if name in KINDS:
        return name
    if name.endswith("_mask"):
        return "masks"
    for kind in ("disparity", "segmentation", "depth", "image"):
        if name.startswith(kind):  # disparity_right, image_left ...
            return kind
    return "identity" if name in ("id", "person", "identity_id") else "label"


def from_tfds(tfds_features: Any) -> dict[str, Feature]:
    """Features of a TFDS ``FeaturesDict`` (``dataset_info.features``): ClassLabel -> classes, Image/Tensor -> shape.

    Nested dicts are flattened to ``parent/child`` keys; a ``Sequence`` (e.g. ``objects``) gives its
    features a leading ``None`` dimension, and its ``bbox`` and ``label`` are ``boxes`` and
    ``box_labels``. Otherwise the kind is the feature's name when that is a kind, else guessed from it
    (``image*`` -> image, ``disparity*`` -> disparity, ``*_mask`` -> masks); other scalars are labels.
    """
    import numpy as np
    import tensorflow_datasets as tfds

    out: dict[str, Feature] = {}

    def add(key: str, f: Any, in_sequence: bool) -> None:
        if isinstance(f, tfds.features.FeaturesDict):
            for name, sub in f.items():
                add(f"{key}/{name}" if key else name, sub, in_sequence)
            return
        if isinstance(f, tfds.features.Sequence):
            add(key, f.feature, True)
            return
        lead = (None,) if in_sequence else ()
        shape, dtype = (*lead, *f.shape), np.dtype(f.np_dtype).name
        kind = _kind(key.rsplit("/", 1)[-1], in_sequence)
        if isinstance(f, tfds.features.ClassLabel):
            out[key] = Feature(kind, shape, dtype, int(f.num_classes), tuple(f.names))
        else:
            out[key] = Feature(kind, shape, dtype)

    add("", tfds_features, False)
    return out

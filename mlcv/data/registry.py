"""The dataset registry: a :class:`DatasetSpec` by name, for the built-in datasets and the TFDS catalogue.

TFDS is the storage: a built-in dataset is a TFDS builder of :mod:`mlcv.data.sources` prepared once into
the TFDS data dir as ArrayRecord files, and every dataset, built-in or from the catalogue, is read back
as a random-access ``tfds`` data source that the grain pipelines of :mod:`mlcv.data.pipeline` index into.
A split string may add class-filter options to the TFDS split (:mod:`mlcv.data.class_filter`); the open-set
datasets of metric learning are declared in :mod:`mlcv.data.open_set`, the rendered stereo and flow
datasets in :mod:`mlcv.data.stereo_specs`, the spec type in :mod:`mlcv.data.specs`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import importlib
import os
from collections.abc import Iterator
from typing import Any

from mlcv.config import ConfigError
from mlcv.data import class_filter, open_set, stereo_specs
from mlcv.data.features import DatasetMeta, Feature, from_features, from_tfds
from mlcv.data.sources import bodies
from mlcv.data.specs import IMAGENET_STATS, ROLES, UINT8_STATS, DatasetSpec, Splits

__all__ = [
    "ROLES",
    "DatasetSpec",
    "Splits",
    "builtin_names",
    "get",
    "load_arrays",
    "meta",
    "num_classes",
    "register",
    "source",
]

# Pixel statistics of the digits train split (values 0..16).
_DIGITS_STATS = {"normalize": {"mean": 4.88, "std": 6.02}}
# Depth statistics of the bodies train split over all 400 x 64 x 64 pixels, as a bare normalize sees
# them: background (10 m) is 92 % of the pixels, bodies average 3.31 m. Computed once in float64 as
# d = load_arrays("bodies", "train")["image"].astype(np.float64); d.mean(), d.std() -> 9.4530, 1.8355.
_BODIES_STATS = {"normalize": {"mean": 9.453, "std": 1.8355}}
# Per-channel RGB statistics of the digit scenes' train splits over all pixels, computed once in float64 as
# x = np.stack([s["image"] for s in DigitScenes.generate("train")]).astype(np.float64).reshape(-1, 3);
# x.mean(0), x.std(0) (scenes_builder; DigitScenesSingle for the single-digit variant).
_SCENES_STATS = {"normalize": {"mean": (127.47, 104.88, 94.31), "std": (76.37, 64.82, 67.41)}}
_SCENES_SINGLE_STATS = {"normalize": {"mean": (126.47, 99.60, 87.94), "std": (78.17, 63.23, 64.74)}}


def _grey(height: int | None, width: int | None) -> Feature:
    return Feature("image", (height, width, 1), "uint8")


def _stereo(height: int, width: int, *, right_view: bool) -> dict[str, Feature]:
    """A grey stereo pair with left-view disparity and its validity mask (and the right view's, if given)."""
    views = ("", "_right") if right_view else ("",)
    return {
        "image": _grey(height, width),
        "image_right": Feature("image_right", (height, width, 1), "uint8"),
        **{f"disparity{v}": Feature("disparity", (height, width), "float32") for v in views},
        **{f"disparity{v}_mask": Feature("masks", (height, width), "bool") for v in views},
    }


_DIGIT_NAMES = tuple(str(i) for i in range(10))


def _digit_scenes(size: int) -> dict[str, Feature]:
    """RGB scenes of digits with their boxes, box classes, instance masks and semantic mask (0 = background)."""
    return {
        "image": Feature("image", (size, size, 3), "uint8"),
        "boxes": Feature("boxes", (None, 4), "float32"),
        "box_labels": Feature("box_labels", (None,), "int64", class_names=_DIGIT_NAMES),
        "masks": Feature("masks", (None, size, size), "bool"),
        "segmentation": Feature("segmentation", (size, size), "uint8", class_names=("background", *_DIGIT_NAMES)),
    }


_BUILTIN: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(
        name="digits",
        splits={"train": "train[:1257]", "validation": "train[1257:]", "test": "test"},
        op_defaults=_DIGITS_STATS,
        builtin=True,
        features={
            "image": _grey(8, 8),
            "label": Feature("label", (), "int64", class_names=tuple(str(i) for i in range(10))),
        },
    ),
    # scikit-image's lfw_subset: 100 faces and 100 non-faces, 25x25 grey; label 1 is a face.
    "faces": DatasetSpec(
        name="faces",
        splits={"train": "train", "validation": "validation", "test": "test"},
        op_defaults=UINT8_STATS,
        builtin=True,
        features={"image": _grey(25, 25), "label": Feature("label", (), "int64", class_names=("non_face", "face"))},
    ),
    # Synthetic posed bodies: depth in metres and a part label per pixel; the images of the body-part
    # forest (experiments/bodies_forest.py, seed 0). 400 / 50 / 100 images.
    "bodies": DatasetSpec(
        name="bodies",
        splits={"train": "train", "validation": "validation", "test": "test"},
        op_defaults=_BODIES_STATS,
        builtin=True,
        features={
            "image": Feature("image", (64, 64, 1), "float32"),
            "segmentation": Feature("segmentation", (64, 64), "uint8", class_names=bodies.PART_NAMES),
        },
    ),
    # Random-dot stereograms of fronto-parallel planes, 64x96 grey, disparities 2..16 px. 200 / 20 / 50.
    "random_dot_stereo": DatasetSpec(
        name="random_dot_stereo",
        splits={"train": "train", "validation": "validation", "test": "test"},
        op_defaults=UINT8_STATS,
        builtin=True,
        features=_stereo(64, 96, right_view=True),
    ),
    # Real digits pasted on photo crops, 96x96 RGB, 1-6 per scene: boxes, instance and semantic masks.
    # 2000 / 200 / 500 scenes; each role pastes only the digits of that role of ``digits``. num_classes is the
    # segmentation's 11 (background + 10 digits); box_labels declare the 10 digit classes.
    "digit_scenes": DatasetSpec(
        name="digit_scenes",
        splits={"train": "train", "validation": "validation", "test": "test"},
        op_defaults=_SCENES_STATS,
        builtin=True,
        features=_digit_scenes(96),
    ),
    # The same with exactly one digit per 64x64 scene, for a localization head. 2000 / 200 / 500 scenes.
    "digit_scenes_single": DatasetSpec(
        name="digit_scenes_single",
        splits={"train": "train", "validation": "validation", "test": "test"},
        op_defaults=_SCENES_SINGLE_STATS,
        builtin=True,
        features=_digit_scenes(64),
    ),
    # scikit-learn's make_circles: a float32 (x, y) point in ``image``, two concentric noisy circles (course §5's
    # polar features). 800 / 200 / 500 points; no normalize statistics: the points already lie within [-1.5, 1.5].
    "circles": DatasetSpec(
        name="circles",
        splits={"train": "train", "validation": "validation", "test": "test"},
        builtin=True,
        features={
            "image": Feature("image", (2,), "float32"),
            "label": Feature("label", (), "int64", class_names=("outer", "inner")),
        },
    ),
    # The Middlebury Motorcycle pair (scikit-image, 500x741 grey): one record, for testing only.
    "motorcycle": DatasetSpec(
        name="motorcycle",
        splits={"test": "test"},
        op_defaults=UINT8_STATS,
        builtin=True,
        features=_stereo(500, 741, right_view=False),
    ),
    **open_set.BUILTIN,  # digits_open_set, face_instances: metric learning on unseen classes
    **stereo_specs.BUILTIN,  # stereo_planes, flow_layers: rendered textured planes
}

# Imported on use so that listing names never pays for TFDS builders.
_BUILDERS = {
    "digits": "mlcv.data.sources.digits:Digits",
    "faces": "mlcv.data.sources.faces:Faces",
    "circles": "mlcv.data.sources.circles:Circles",
    "bodies": "mlcv.data.sources.bodies_builder:Bodies",
    "random_dot_stereo": "mlcv.data.sources.stereo_builders:RandomDotStereo",
    "motorcycle": "mlcv.data.sources.stereo_builders:Motorcycle",
    "digit_scenes": "mlcv.data.sources.scenes_builder:DigitScenes",
    "digit_scenes_single": "mlcv.data.sources.scenes_builder:DigitScenesSingle",
    **open_set.BUILDERS,
    **stereo_specs.BUILDERS,
}

_HOLD_OUT_10 = {"train": "train[:90%]", "validation": "train[90%:]", "test": "test"}

# TFDS detection datasets after ``decode_detection`` (mlcv/data/ops/catalogue.py): boxes in pixels, classes from
# the TFDS ClassLabel, and per box a crowd flag (COCO's is_crowd, VOC's is_difficult: ignored by the detection
# evaluator) and the area that decides the size range (COCO's, else the box's).
_DETECTION_DECODED = {"image": "image", "boxes": "objects/bbox", "box_labels": "objects/label"}
_DETECTION_ADDED = {
    "box_crowd": Feature("masks", (None,), "bool"),  # a binary flag per box
    "box_area": Feature("boxes", (None,), "float32"),  # pixels^2 of the current image
}


def _detection(name: str, splits: dict[str, str]) -> DatasetSpec:
    return DatasetSpec(name, splits, IMAGENET_STATS, features=_DETECTION_ADDED, decoded=_DETECTION_DECODED)


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
        "imagenette", {"train": "train[:95%]", "validation": "train[95%:]", "test": "validation"}, IMAGENET_STATS
    ),
    # Manual download: TFDS prepares it from the ILSVRC2012 tar files placed in its manual_dir. 10,009
    # training images (0.78 %) are held out for model selection; the official validation set is the test.
    "imagenet2012": DatasetSpec(
        "imagenet2012", {"train": "train[10009:]", "validation": "train[:10009]", "test": "validation"}, IMAGENET_STATS
    ),
    # Detection, read through decode_detection (e.g. pp "decode_detection|resize(512)|pad_boxes(50)|normalize";
    # for training decode_detection(crowd='drop', difficult='drop')). VOC 2007: 2,501 / 2,510 / 4,952 images,
    # all labelled (its usual protocol trains on train+validation: config.data.train_split).
    "voc/2007": _detection("voc/2007", {"train": "train", "validation": "validation", "test": "test"}),
    # COCO 2017: test2017 has no labels, so val2017 (5,000 images) is the test and as many training images are
    # held out for model selection.
    "coco/2017": _detection("coco/2017", {"train": "train[5000:]", "validation": "train[:5000]", "test": "validation"}),
    # Segmentation, read through decode_segmentation (e.g. pp "decode_segmentation|resize(128)|normalize"), whose
    # default here maps the trimap to background 0, pet 1 and border 255 (ignored). 3,680 training images (10 % held
    # out for model selection), 3,669 test images; the label map has the size of its image, whose shape TFDS gives.
    "oxford_iiit_pet": DatasetSpec(
        "oxford_iiit_pet",
        _HOLD_OUT_10,
        {**IMAGENET_STATS, "decode_segmentation": {"mapping": "pet_trimap"}},
        features={"segmentation": Feature("segmentation", (None, None), "uint8", class_names=("background", "pet"))},
        decoded={"image": "image"},
    ),
    **open_set.CATALOGUE,  # caltech_birds2011, cars196, lfw with their open-set class splits
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
    config = name.split(":")[0]  # "mnist:3.0.1" is mnist at a pinned version
    base = config.split("/")[0]  # "voc/2007" is a config of voc, with a spec of its own
    for key in (config, base):
        if key in _CATALOGUE:
            return dataclasses.replace(_CATALOGUE[key], name=name)
    import tensorflow_datasets as tfds

    try:
        # builder_cls only imports the one builder module; list_builders()
        # would import TensorFlow and probe the network.
        tfds.builder_cls(base)
    except tfds.core.registered.DatasetNotFoundError:
        raise ConfigError(
            f"unknown dataset {name!r} (config.data.name): not a built-in dataset "
            f"({', '.join(builtin_names())}) nor a TFDS catalogue name"
        ) from None
    return DatasetSpec(name=name, splits=dict(_HOLD_OUT_10), op_defaults=UINT8_STATS)


def source(spec: DatasetSpec, split: str, *, data_dir: str | None = None, download: bool = True):
    """A random-access data source of one TFDS split (prepared on first use).

    ``split`` may carry class-filter options after the TFDS split (``"train+test|classes=0:100|images=:90%"``):
    the source is then a :class:`~mlcv.data.class_filter.ClassFilteredSource` of those records, as it is for a
    dataset whose label is a name (LFW's), whose records carry an id in its place.
    """
    import tensorflow_datasets as tfds

    split, options = class_filter.parse(split)
    if spec.builtin:
        builder = _builder(spec.name, data_dir)
        if not builder.is_prepared():
            with _prepare_lock(builder.data_dir):
                # Another process (a sweep shard, a second run) may have prepared it while this one waited.
                builder = _builder(spec.name, data_dir)
                if not builder.is_prepared():
                    builder.download_and_prepare(file_format="array_record")
        return class_filter.wrap(builder.as_data_source(split=split), options)
    try:
        src = tfds.data_source(spec.name, split=split, data_dir=data_dir, download=download)
    except Exception as e:  # TFDS raises many types for "not there / cannot fetch"
        raise ConfigError(
            f"cannot load TFDS dataset {spec.name!r} split {split!r} (config.data.name / config.data.data_dir): {e}"
        ) from None
    return class_filter.wrap(src, options)


# meta() takes a ``source`` argument, which hides the function of that name inside it.
_open_source = source


@contextlib.contextmanager
def _prepare_lock(version_dir: str) -> Iterator[None]:
    """Holds an exclusive lock on preparing the dataset whose files go to ``version_dir``.

    Runs started together on a fresh data dir (sweep shards, parallel test workers) would otherwise build the
    same dataset at once and race on its files; the second waits and then finds it prepared. The lock is a
    file beside the dataset's directory; the kernel releases it when its holder exits, even by kill -9.
    """
    parent = os.path.dirname(os.path.normpath(version_dir))
    os.makedirs(parent, exist_ok=True)
    fd = os.open(
        os.path.join(os.path.dirname(parent), f".{os.path.basename(parent)}.prepare.lock"), os.O_CREAT | os.O_RDWR
    )
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _builder(name: str, data_dir: str | None):
    builder = _BUILDERS[name]
    if isinstance(builder, str):
        module, cls = builder.split(":")
        builder = getattr(importlib.import_module(module), cls)
    return builder(data_dir=data_dir, file_format="array_record")


def register(spec: DatasetSpec, builder: type | str) -> DatasetSpec:
    """Registers a built-in dataset: its spec and its TFDS builder (a class, or ``"module:Class"`` imported on use).

    Raises:
      ValueError: the name is taken, or the spec does not declare its features.
    """
    if spec.name in _BUILTIN:
        raise ValueError(f"dataset {spec.name!r} registered twice")
    if not spec.features:
        raise ValueError(f"dataset {spec.name!r}: declare its features, so that meta() needs no data")
    spec = dataclasses.replace(spec, builtin=True)
    _BUILTIN[spec.name] = spec
    _BUILDERS[spec.name] = builder
    return spec


def meta(spec: DatasetSpec, source: Any = None, *, data_dir: str | None = None) -> DatasetMeta:
    """Features, classes and image shape of a dataset.

    From ``spec.features`` when declared (every built-in dataset: no data is read or prepared), else
    from the TFDS ``dataset_info.features`` of ``source`` (a data source of any of the dataset's
    splits), or, without one, of the dataset's training source. A spec with ``decoded`` keys describes
    its records after the decode op: those keys from the TFDS features, and ``spec.features``.
    """
    if spec.features and not spec.decoded:
        return from_features(spec.features)
    if source is None:
        source = _open_source(spec, spec.splits["train"], data_dir=data_dir)
    features = from_tfds(source.dataset_info.features)
    if spec.decoded:
        features = {key: features[tfds_key] for key, tfds_key in spec.decoded.items()} | spec.features
    return from_features(features)


def num_classes(src, label_key: str = "label") -> int:
    """Number of classes of a TFDS data source's ClassLabel feature."""
    return int(src.dataset_info.features[label_key].num_classes)


def load_arrays(name: str, role: str, *, data_dir: str | None = None, split: str | None = None) -> dict[str, Any]:
    """Every record of one split as stacked numpy arrays, by feature name (``image``, ``label``, ...).

    For methods that see a whole split at once (kNN, k-means, AdaBoost); ``role``
    is ``train``, ``validation`` or ``test`` and picks the dataset's split for that
    role unless ``split`` names one.

    Raises:
      ConfigError: the dataset has no split for ``role`` (and ``split`` names none).
    """
    import numpy as np

    spec = get(name)
    src = source(spec, split or spec.splits[role], data_dir=data_dir)
    # Item by item: the sources tfds.testing.mock_data builds have no working __getitems__.
    records = [src[i] for i in range(len(src))]
    return {key: np.stack([np.asarray(r[key]) for r in records]) for key in records[0]} if records else {}

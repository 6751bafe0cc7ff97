"""The datasets of metric learning, split open-set: the classes a model is tested on are never seen in training.

Built in (offline): ``digits_open_set`` (digits 0-4 train and validation, 5-9 test) and ``face_instances``
(scikit-image's 100 faces as 100 identities of 8 views; faces 0-39 / 40-49 / 50-99). From the TFDS catalogue, with
the field's standard class splits, through the class filter of split strings (:mod:`mlcv.data.class_filter`):

============================  ==========================  ========================  ===========================
dataset                       train                       validation                test
============================  ==========================  ========================  ===========================
``caltech_birds2011`` (CUB)   classes 0-99, 90 %          classes 0-99, 10 %        classes 100-199 (5,924)
``cars196``                   classes 0-97, 90 %          classes 0-97, 10 %        classes 98-195 (8,131)
``lfw``                       first half of the names     the same names, 10 %      the second half
============================  ==========================  ========================  ===========================

CUB-200-2011 and Cars196 take both TFDS splits (``train+test``) and part them by class, as the metric learning
literature does. Their validation is the last tenth of each training class's images (``images=90%:``): the same
classes as training, not class-disjoint, so it measures fitting, not open-set retrieval.

LFW has no standard class split for retrieval (its protocols are verification pairs). TFDS ``lfw`` has one split of
13,233 images with the person's name as label; the names sorted give the ids 0..5,748, and the first half (2,875
names) trains, the second half (2,874 names) tests. Most people have one image: 10 % of a person's images
is nothing below 6 images, so validation holds only people with 6 or more, and P x K batches need the split option
``|min_images=K`` (``config.data.train_split``) to drop people with fewer than K images.

The catalogue images are big and of varying sizes: pp strings decode nothing (TFDS data sources give arrays) but
must resize them, e.g. ``"random_resized_crop(224)|flip_lr|normalize"`` to train and
``"resize_short(256)|center_crop(224)|normalize"`` to evaluate.
"""

from __future__ import annotations

from mlcv.data.features import Feature
from mlcv.data.sources.instances import NUM_FACES
from mlcv.data.specs import IMAGENET_STATS, UINT8_STATS, DatasetSpec

# Pixel statistics of the digits_open_set train split (values 0..16), computed once in float64 as
# x = load_arrays("digits_open_set", "train")["image"].astype(np.float64); x.mean(), x.std() -> 4.8808, 6.0510.
_DIGITS_OPEN_SET_STATS = {"normalize": {"mean": 4.8808, "std": 6.051}}

_ROLES = {"train": "train", "validation": "validation", "test": "test"}

BUILTIN: dict[str, DatasetSpec] = {
    "digits_open_set": DatasetSpec(
        name="digits_open_set",
        splits=_ROLES,
        op_defaults=_DIGITS_OPEN_SET_STATS,
        builtin=True,
        features={
            "image": Feature("image", (8, 8, 1), "uint8"),
            "label": Feature("label", (), "int64", class_names=tuple(str(i) for i in range(10))),
        },
    ),
    "face_instances": DatasetSpec(
        name="face_instances",
        splits=_ROLES,
        op_defaults=UINT8_STATS,  # [-1, 1], as the faces they are made of
        builtin=True,
        features={
            "image": Feature("image", (25, 25, 1), "uint8"),
            "label": Feature("label", (), "int64", class_names=tuple(str(i) for i in range(NUM_FACES))),
        },
    ),
}

BUILDERS = {
    "digits_open_set": "mlcv.data.sources.open_set_builders:DigitsOpenSet",
    "face_instances": "mlcv.data.sources.open_set_builders:FaceInstances",
}


def _by_class(train_classes: str, test_classes: str) -> dict[str, str]:
    """Both TFDS splits, parted by class; validation is the last tenth of every training class's images."""
    return {
        "train": f"train+test|classes={train_classes}|images=:90%",
        "validation": f"train+test|classes={train_classes}|images=90%:",
        "test": f"train+test|classes={test_classes}",
    }


_LABELLED = {"image": "image", "label": "label"}  # meta: the image and the ClassLabel, not boxes or file names

CATALOGUE: dict[str, DatasetSpec] = {
    # CUB-200-2011: 11,788 images of 200 bird species; classes 0-99 (5,864 images) train, 100-199 test.
    "caltech_birds2011": DatasetSpec(
        "caltech_birds2011", _by_class("0:100", "100:200"), IMAGENET_STATS, decoded=_LABELLED
    ),
    # Cars196: 16,185 images of 196 car models; classes 0-97 (8,054 images) train, 98-195 test.
    "cars196": DatasetSpec("cars196", _by_class("0:98", "98:196"), IMAGENET_STATS, decoded=_LABELLED),
    # LFW: names mapped to ids by the class filter; no standard class split exists (module docstring).
    "lfw": DatasetSpec(
        "lfw",
        {
            "train": "train|classes=:50%|images=:90%",
            "validation": "train|classes=:50%|images=90%:",
            "test": "train|classes=50%:",
        },
        IMAGENET_STATS,
        features={"label": Feature("label", (), "int64", num_classes=5749)},
        decoded={"image": "image"},
    ),
}

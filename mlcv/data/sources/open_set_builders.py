"""TFDS builders of the open-set datasets of metric learning: ``digits_open_set`` and ``face_instances``.

Open-set: the test split holds classes (identities) that training never sees, so a model is judged by how it
embeds the unseen, by retrieval or verification, not by a classifier's head. Both ship inside scikit-learn and
scikit-image, so preparing them needs no network.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from mlcv.data.sources import instances
from mlcv.data.sources.digits import Digits

_SPLIT_SEED = 0
TRAIN_DIGITS = (0, 1, 2, 3, 4)
# Faces by index: [0, 40) train, [40, 50) validation, [50, 100) test.
FACE_SPLITS = {"train": (0, 40), "validation": (40, 50), "test": (50, 100)}


class DigitsOpenSet(Digits):
    """scikit-learn's 1,797 digits, split by class: digits 0-4 to learn from, digits 5-9 to test on.

    - ``train``: a fixed stratified 80 % (720) of the 901 images of digits 0-4;
    - ``validation``: the other 20 % (181) of digits 0-4: the same identities as training, on images it has not
      seen, so it measures fitting, not the open-set generalization that ``test`` measures;
    - ``test``: every image of digits 5-9 (896), identities never seen in training.

    Labels keep their digit value (test labels are 5..9); the records, features and their generation are
    ``digits``' own (this builder subclasses it): only the split differs.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Digits 0-4: stratified 720 / 181 train / validation, seed 0; digits 5-9: 896 test."}

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        labels = digits.target
        seen = np.flatnonzero(np.isin(labels, TRAIN_DIGITS))
        train, validation = train_test_split(seen, test_size=0.2, stratify=labels[seen], random_state=_SPLIT_SEED)
        test = np.flatnonzero(~np.isin(labels, TRAIN_DIGITS))
        images = digits.images.astype(np.uint8)[..., None]
        return {
            role: self._generate_examples(images, labels, np.sort(index))
            for role, index in (("train", train), ("validation", validation), ("test", test))
        }


class FaceInstances(tfds.core.GeneratorBasedBuilder):
    """The 100 faces of scikit-image's ``lfw_subset`` as 100 identities of 8 views each (800 images).

    An identity is an instance here, one face image, not a person: its label is the face's index 0..99 in
    ``lfw_subset`` and its 8 views are made once, at preparation, by a fixed-seed augmentation
    (:func:`mlcv.data.sources.instances.face_views`: a mirror with probability 1/2, a rotation within +-10 degrees,
    a shift within +-2 px, brightness and contrast within +-10 %). The original image is not among them.

    Split by identity: faces 0-39 ``train`` (320 images), faces 40-49 ``validation`` (80) and faces 50-99 ``test``
    (400), so validation and test faces are never seen in training. Images are uint8 25x25x1.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "8 views a face, seed 0; faces 0-39 / 40-49 / 50-99 train / validation / test."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="scikit-image lfw_subset's 100 faces, 8 augmented views each; a face is an identity.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(25, 25, 1), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(num_classes=instances.NUM_FACES),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        views = instances.face_views()
        return {role: self._generate_examples(views, *bounds) for role, bounds in FACE_SPLITS.items()}

    def _generate_examples(self, views, first, last):
        for face in range(first, last):
            for v in range(views.shape[1]):
                yield face * views.shape[1] + v, {"image": views[face, v][..., None], "label": face}

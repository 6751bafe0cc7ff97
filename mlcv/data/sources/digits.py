"""The ``digits`` dataset as a TFDS builder: scikit-learn's 1,797 real 8x8 digits.

The data ships inside scikit-learn, so preparing it needs no network. The
split into ``train`` (1,437) and ``test`` (360) is stratified and fixed by a
constant seed; the validation split is carved out of ``train`` by the
registry (``train[1257:]``), never out of ``test``.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

# Fixed so that every machine and every run sees the same test images.
_SPLIT_SEED = 0
_TEST_SIZE = 360


class Digits(tfds.core.GeneratorBasedBuilder):
    """scikit-learn ``load_digits`` as uint8 images with values 0..16."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Stratified 1437 / 360 train / test split, seed 0."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="UCI optical digits as shipped by scikit-learn (8x8, 17 grey levels).",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        index = np.arange(len(digits.target))
        train_idx, test_idx = train_test_split(
            index, test_size=_TEST_SIZE, stratify=digits.target, random_state=_SPLIT_SEED
        )
        images = digits.images.astype(np.uint8)[..., None]
        return {
            "train": self._generate_examples(images, digits.target, train_idx),
            "test": self._generate_examples(images, digits.target, test_idx),
        }

    def _generate_examples(self, images, labels, index):
        for i in index:
            yield int(i), {"image": images[i], "label": int(labels[i])}

"""The ``faces`` dataset as a TFDS builder: scikit-image's ``data.lfw_subset()``.

200 real 25x25 grey images: 100 faces cropped from Labeled Faces in the Wild
and 100 non-face patches. They ship inside scikit-image, so preparing the
dataset needs no network. The stratified split is fixed by a constant seed:
train 100, validation 40, test 60 images, half faces each.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

_SPLIT_SEED = 0
_SIZES = {"train": 100, "validation": 40, "test": 60}


class Faces(tfds.core.GeneratorBasedBuilder):
    """``skimage.data.lfw_subset()`` as uint8 images; label 1 is a face, 0 is not."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Stratified 100 / 40 / 60 train / validation / test split, seed 0."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="scikit-image lfw_subset: 100 LFW faces and 100 non-faces, 25x25 grey.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(25, 25, 1), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(names=["non_face", "face"]),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        from skimage import data
        from sklearn.model_selection import train_test_split

        # lfw_subset holds the 100 faces first, then the 100 non-faces, as floats in [0, 1].
        images = np.round(data.lfw_subset() * 255).astype(np.uint8)[..., None]
        labels = np.r_[np.ones(100, int), np.zeros(100, int)]
        index = np.arange(len(labels))
        train, rest = train_test_split(index, train_size=_SIZES["train"], stratify=labels, random_state=_SPLIT_SEED)
        val, test = train_test_split(
            rest, train_size=_SIZES["validation"], stratify=labels[rest], random_state=_SPLIT_SEED
        )
        return {
            role: self._generate_examples(images, labels, idx)
            for role, idx in (("train", train), ("validation", val), ("test", test))
        }

    def _generate_examples(self, images, labels, index):
        for i in index:
            yield int(i), {"image": images[i], "label": int(labels[i])}

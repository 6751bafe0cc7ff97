"""The ``digit_scenes`` and ``digit_scenes_single`` datasets as TFDS builders: digits pasted on photo crops.

Scenes of :mod:`mlcv.data.sources.scenes`: ``digit_scenes`` holds 1-6 digits per 96x96 scene (detection,
semantic and instance segmentation), ``digit_scenes_single`` exactly one per 64x64 scene (localization).

No digit is in two roles, and the roles agree with the ``digits`` dataset's: the scenes of a role paste only
the scikit-learn digits of that role of ``digits`` (:func:`digit_pools`), so a model pretrained on the
``digits`` training role never sees a scene's validation or test digit, and the other way round.

Record ``i`` of a role is scene ``i`` of ``scenes.generate_split(SEEDS[role], ...)``, i.e. drawn with
``np.random.default_rng([SEEDS[role], i])`` (shuffling disabled): fixed seeds, distinct between roles and
between the two datasets.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

from mlcv.data.sources import digits, scenes

# The registry's digits roles: train "train[:1257]", validation "train[1257:]" of the stored train split.
DIGITS_VALIDATION_START = 1257
KEYS = ("image", "boxes", "box_labels", "masks", "segmentation")


def digit_pools() -> dict[str, np.ndarray]:
    """The scikit-learn digit indices (rows of ``load_digits().images``) of each role of ``digits``, sorted.

    The test role is the test split of ``Digits`` (the same ``train_test_split`` call). Its train split is
    stored in TFDS's shuffled order (the builder keys record ``i`` by ``i`` and does not disable shuffling):
    the order of the keys' hashes salted with the split name. The registry's ``train[:1257]`` and
    ``train[1257:]`` slice that order, so the pools do too.
    """
    from sklearn.model_selection import train_test_split
    from tensorflow_datasets.core import hashing

    _, labels = scenes.load_digits_arrays()
    # As Digits._split_generators splits: keep these arguments equal to its call.
    train, test = train_test_split(
        np.arange(len(labels)), test_size=digits._TEST_SIZE, stratify=labels, random_state=digits._SPLIT_SEED
    )
    stored = np.array(sorted(train.tolist(), key=hashing.Hasher("train").hash_key))
    return {
        "train": np.sort(stored[:DIGITS_VALIDATION_START]),
        "validation": np.sort(stored[DIGITS_VALIDATION_START:]),
        "test": np.sort(test),
    }


class DigitScenes(tfds.core.GeneratorBasedBuilder):
    """1-6 real digits on a 96x96 photo crop: boxes, labels, instance masks and a semantic mask per scene."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "2000 / 200 / 500 96x96 scenes of 1-6 digits, seeds 0 / 1 / 2."}
    SIZE = 96
    SPLIT_SIZES = {"train": 2000, "validation": 200, "test": 500}
    SEEDS = {"train": 0, "validation": 1, "test": 2}
    SCENE_ARGS: dict = {"num_digits": (1, 6)}

    def _info(self) -> tfds.core.DatasetInfo:
        s = self.SIZE
        return tfds.core.DatasetInfo(
            builder=self,
            description="Real scikit-learn digits, upscaled 2-5x, pasted as contrasting ink on crops of the "
            "photos of scikit-image and scikit-learn (mlcv.data.sources.scenes).",
            features=tfds.features.FeaturesDict(
                {
                    # Unencoded, TFDS stores every uint8 or bool as an int64 of a tf.train.Feature list: raw
                    # bytes serialize several times faster, and masks compress ~30x on top.
                    "image": tfds.features.Tensor(shape=(s, s, 3), dtype=np.uint8, encoding="bytes"),
                    "boxes": tfds.features.Tensor(shape=(None, 4), dtype=np.float32),
                    "box_labels": tfds.features.Tensor(shape=(None,), dtype=np.int64),
                    "masks": tfds.features.Tensor(shape=(None, s, s), dtype=np.bool_, encoding="zlib"),
                    "segmentation": tfds.features.Tensor(shape=(s, s), dtype=np.uint8, encoding="zlib"),
                }
            ),
            disable_shuffling=True,  # record i is scene i of its role's seed
        )

    @classmethod
    def generate(cls, role: str, num_scenes: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        """The first ``num_scenes`` (default all) records of ``role`` as generated, with their ``digit_index``."""
        num_scenes = cls.SPLIT_SIZES[role] if num_scenes is None else num_scenes
        pool = digit_pools()[role]
        return scenes.generate_split(cls.SEEDS[role], num_scenes, pool, size=cls.SIZE, **cls.SCENE_ARGS)

    def _split_generators(self, dl_manager):
        del dl_manager  # the digits and photos ship with scikit-learn and scikit-image
        return {role: self._generate_examples(role) for role in self.SPLIT_SIZES}

    def _generate_examples(self, role: str):
        for i, scene in enumerate(self.generate(role)):
            yield i, {key: scene[key] for key in KEYS}


class DigitScenesSingle(DigitScenes):
    """Exactly one real digit on a 64x64 photo crop, for localization (same rules as ``digit_scenes``)."""

    RELEASE_NOTES = {"1.0.0": "2000 / 200 / 500 64x64 scenes of one digit, seeds 10 / 11 / 12."}
    SIZE = 64
    SEEDS = {"train": 10, "validation": 11, "test": 12}
    SCENE_ARGS = {"num_digits": (1, 1)}

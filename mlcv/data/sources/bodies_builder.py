"""The ``bodies`` dataset as a TFDS builder: synthetic posed-body depth images with per-pixel part labels.

The images are exactly those the body-part forest of ``experiments/bodies_forest.py`` draws for
``config.seed = 0`` at 64x64 (:class:`~mlcv.classic.methods.depth_forest.DepthForest`): one child of
``np.random.SeedSequence(0)`` per role, in the order train, validation, test, each split generated in
one call of :func:`mlcv.data.sources.bodies.generate` (a body's pose depends on the split's size, so
the sizes are part of the recipe). A network trained here and that forest see the same images.

Records are stored in generation order (shuffling disabled): record ``i`` of a split is image ``i``.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from mlcv.data.sources import bodies

SEED = 0  # config.seed of experiments/bodies_forest.py
SIZE = 64
SPLIT_SIZES = {"train": 400, "validation": 50, "test": 100}  # the forest's num_{role}_images


def split_seeds(seed: int = SEED) -> dict[str, int]:
    """The ``bodies.generate`` seed of each split, derived from ``seed`` as ``DepthForest`` derives them."""
    # DepthForest spawns one more child for its own sampling; spawning fewer would not change these three.
    states = np.random.SeedSequence(seed).spawn(len(SPLIT_SIZES) + 1)
    return {role: int(st.generate_state(1)[0]) for role, st in zip(SPLIT_SIZES, states, strict=False)}


class Bodies(tfds.core.GeneratorBasedBuilder):
    """Depth maps (float32 metres, background :data:`~mlcv.data.sources.bodies.BACKGROUND_DEPTH`) and part labels."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "400 / 50 / 100 64x64 bodies, the images of DepthForest with seed 0."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Synthetic depth images of posed bodies with 11 part labels (mlcv.data.sources.bodies).",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(SIZE, SIZE, 1), dtype=np.float32),
                    "segmentation": tfds.features.Tensor(shape=(SIZE, SIZE), dtype=np.uint8),
                }
            ),
            supervised_keys=("image", "segmentation"),
            disable_shuffling=True,  # record i is generate(...)[i], as the forest indexes them
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        seeds = split_seeds()
        return {role: self._generate_examples(seeds[role], n) for role, n in SPLIT_SIZES.items()}

    def _generate_examples(self, seed: int, num_images: int):
        out = bodies.generate(seed, num_images, SIZE)
        for i in range(num_images):
            yield i, {"image": out["depth"][i, :, :, None], "segmentation": out["label"][i]}

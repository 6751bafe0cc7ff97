"""Stereo datasets as TFDS builders: ``random_dot_stereo`` (generated) and ``motorcycle`` (Middlebury, test only).

Both store grey ``uint8`` views ``image`` (left) and ``image_right`` of shape ``[H, W, 1]``, the left
view's ``disparity`` (float32 pixels: the left pixel ``(y, x)`` matches the right pixel ``(y, x - d)``)
and ``disparity_mask`` (True where the disparity is ground truth the right view can confirm). Where the
mask is False the disparity is 0, the "no data" value the preprocessing ops pad with, so a masked loss
never meets a NaN. Grey because the random-dot pairs are grey: a model trained on them reads the
Motorcycle pair through the same pipeline.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from mlcv.data.sources import stereo

HEIGHT, WIDTH = 64, 96
SPLIT_SIZES = {"train": 200, "validation": 20, "test": 50}
# Record i of a split is synthetic_pair(SEED_BASE[split] + i, ...): fixed seeds, disjoint between splits.
SEED_BASE = {"train": 100_000, "validation": 200_000, "test": 300_000}
# Scaled from synthetic_pair's 4..24 px at 160 px wide to this width; the rest are its defaults.
PAIR_ARGS = {"planes": 4, "min_disparity": 2.0, "max_disparity": 16.0, "texture_sigma": 1.0, "noise_std": 2.0}


def _grey_u8(x: np.ndarray) -> np.ndarray:
    """Float grey levels (H, W) as uint8 (H, W, 1), rounded and clipped to 0..255."""
    return np.clip(np.round(x), 0, 255).astype(np.uint8)[..., None]


def _tensor(shape: tuple[int, ...], dtype) -> tfds.features.Tensor:
    return tfds.features.Tensor(shape=shape, dtype=dtype)


def _stereo_features(height: int, width: int, right_view: bool) -> tfds.features.FeaturesDict:
    views = ("", "_right") if right_view else ("",)
    return tfds.features.FeaturesDict(
        {
            "image": _tensor((height, width, 1), np.uint8),
            "image_right": _tensor((height, width, 1), np.uint8),
            **{f"disparity{v}": _tensor((height, width), np.float32) for v in views},
            **{f"disparity{v}_mask": _tensor((height, width), np.bool_) for v in views},
        }
    )


def random_dot_record(seed: int) -> dict[str, np.ndarray]:
    """One ``random_dot_stereo`` record: ``synthetic_pair(seed)`` at the dataset's size, as stored."""
    pair = stereo.synthetic_pair(seed, HEIGHT, WIDTH, **PAIR_ARGS)
    return {
        "image": _grey_u8(pair["left"]),
        "image_right": _grey_u8(pair["right"]),
        "disparity": pair["disparity"],
        "disparity_right": pair["disparity_right"],
        # Every pixel has an exact disparity; the masks drop those whose match the other view hides.
        "disparity_mask": ~pair["occluded"],
        "disparity_right_mask": ~pair["occluded_right"],
    }


class RandomDotStereo(tfds.core.GeneratorBasedBuilder):
    """Random-dot stereograms of fronto-parallel planes with both views' exact disparities and occlusions."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "200 / 20 / 50 64x96 pairs, disparities 2-16 px, seeds 100000 / 200000 / 300000 + i."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Random-dot stereograms (mlcv.data.sources.stereo.synthetic_pair) with left and right "
            "disparities and occlusion masks.",
            features=_stereo_features(HEIGHT, WIDTH, right_view=True),
            disable_shuffling=True,  # record i is seed SEED_BASE[split] + i
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        return {role: self._generate_examples(SEED_BASE[role], n) for role, n in SPLIT_SIZES.items()}

    def _generate_examples(self, base: int, num_pairs: int):
        for i in range(num_pairs):
            yield i, random_dot_record(base + i)


def motorcycle_record() -> dict[str, np.ndarray]:
    """The Middlebury Motorcycle pair as stored: grey uint8 views, disparity 0 and mask False without ground truth."""
    pair = stereo.motorcycle()
    known = np.isfinite(pair["disparity"])
    return {
        "image": _grey_u8(pair["left"]),
        "image_right": _grey_u8(pair["right"]),
        "disparity": np.where(known, pair["disparity"], 0.0).astype(np.float32),
        "disparity_mask": known,
    }


class Motorcycle(tfds.core.GeneratorBasedBuilder):
    """scikit-image's Middlebury 2014 Motorcycle pair (500 x 741), one test record; no right-view disparity."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "One 500x741 grey pair with left disparity and its mask; test split only."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Middlebury 2014 Motorcycle, downscaled 4x by scikit-image; BT.601 grey.",
            features=_stereo_features(500, 741, right_view=False),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # ships with scikit-image
        # One record: a train or validation split would be this same pair, so there is none.
        return {"test": self._generate_examples()}

    def _generate_examples(self):
        yield 0, motorcycle_record()

"""The ``circles`` dataset as a TFDS builder: two concentric noisy circles from scikit-learn's ``make_circles``.

A 2-D toy problem for the course's polar features (§5): class 0 lies on the unit circle, class 1 on the circle of
radius 0.5, both with Gaussian noise of std 0.1 on each coordinate. No line of the (x, y) plane separates them;
the radius does. Each split is its own ``make_circles`` draw with a fixed seed, so every machine sees the same
points: train 800 (seed 0), validation 200 (seed 1), test 500 (seed 2), half of each class. The point is stored
as ``image``, a float32 ``(x, y)`` 2-vector, since ``image`` is the key the classifiers read.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

# make_circles' arguments of each split: (n_samples, random_state).
SPLITS = {"train": (800, 0), "validation": (200, 1), "test": (500, 2)}
NOISE = 0.1
FACTOR = 0.5  # inner radius / outer radius
CLASS_NAMES = ("outer", "inner")  # make_circles' labels 0 and 1


def generate(role: str) -> tuple[np.ndarray, np.ndarray]:
    """``(points [N, 2] float32, labels [N] int64)`` of one split, as ``make_circles`` draws them."""
    from sklearn.datasets import make_circles

    n, seed = SPLITS[role]
    points, labels = make_circles(n, noise=NOISE, factor=FACTOR, random_state=seed)
    return points.astype(np.float32), labels.astype(np.int64)


class Circles(tfds.core.GeneratorBasedBuilder):
    """``make_circles`` points as float32 ``(x, y)`` in ``image``; label 0 is the outer circle, 1 the inner."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "800 / 200 / 500 points, noise 0.1, factor 0.5, seeds 0 / 1 / 2."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="scikit-learn make_circles: two concentric noisy circles in the plane.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(2,), dtype=np.float32),
                    "label": tfds.features.ClassLabel(names=list(CLASS_NAMES)),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        return {role: self._generate_examples(*generate(role)) for role in SPLITS}

    def _generate_examples(self, points, labels):
        for i, (point, label) in enumerate(zip(points, labels, strict=True)):
            yield i, {"image": point, "label": int(label)}

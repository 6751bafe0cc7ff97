"""Body-part recognition on synthetic depth images: a random forest on depth-comparison features.

Run:
  python launch.py --config experiments/bodies_forest.py --workdir runs/bodies_forest
  python launch.py --config experiments/bodies_forest.py:runlocal --workdir runs/bodies_forest_local

Labels 10 body parts per pixel of synthetic 64x64 depth images (mlcv.data.sources.bodies; 400 train / 50
validation / 100 test). Reaches 83.1 ± 1.2 % test mIoU (seeds 0-2), body-pixel accuracy 93.1 ± 0.6 %, part
centres 0.056 ± 0.003 m off; 58-63 s a run on a shared 2-core CPU. Details: docs/results.md#bodies_forest.
"""

from __future__ import annotations

import ml_collections

from mlcv import defaults
from mlcv.config import parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The depth-forest config; ``arg`` may be ``runlocal`` (a few seconds)."""
    args = parse_arg(arg, runlocal=False)
    config = defaults.fitted("depth_forest")

    # Train, validation and test images come from three seeds derived from config.seed.
    config.data = ml_collections.ConfigDict()
    config.data.name = "bodies"
    config.data.image_size = 64
    config.data.num_train_images = 400
    config.data.num_validation_images = 50
    config.data.num_test_images = 100
    config.data.pixels_per_image = 300  # training pixels sampled per image, uniformly over the body

    config.features = ml_collections.ConfigDict()
    config.features.max_offset = 60.0  # pixel-metres: 60 reaches 20 pixels (0.7 m) at 3 m
    config.features.unary = 0.5  # fraction of features with dn = 0 (compare a probe with p itself)

    config.forest = ml_collections.ConfigDict()
    config.forest.num_trees = 5
    config.forest.max_depth = 20
    config.forest.max_features = 50  # candidate offset pairs per node
    config.forest.min_samples_leaf = 2
    config.forest.criterion = "entropy"  # entropy | gini
    config.forest.bootstrap = True

    # Validation mIoU chooses the depth at which the forest predicts.
    config.select = ml_collections.ConfigDict({"depths": (8, 12, 16, 20)})

    config.joints = ml_collections.ConfigDict()
    config.joints.bandwidth = 0.1  # metres
    config.joints.kernel = "gaussian"  # gaussian | flat
    config.joints.min_probability = 0.1
    config.joints.num_seeds = 16  # the heaviest pixels of each part start a climb
    config.joints.max_iter = 50

    if args.runlocal:
        config.data.update(num_train_images=30, num_validation_images=8, num_test_images=8, pixels_per_image=50)
        config.forest.update(num_trees=2, max_depth=8, max_features=20)
        config.select.depths = (4, 8)
    return config

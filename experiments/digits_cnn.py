"""Small CNN on scikit-learn's digits: the default experiment.

Run:
  python launch.py                                    # same as the next line
  python launch.py --config experiments/digits_cnn.py --workdir runs/digits_cnn
  python launch.py --config experiments/digits_cnn.py:runlocal   # a few steps

Reaches 98.67 ± 0.84 % test accuracy (360 images; checkpoint chosen on 180 validation images), seeds 0-4;
15-17 s a run on a 2-core CPU (11,000-13,000 training images/s), start-up and compilation included. Per-seed
figures, the on-device pipeline's and the YNNPACK convolutions' numbers: docs/results.md#digits_cnn.
"""

from __future__ import annotations

import ml_collections

from mlcv import defaults
from mlcv.config import parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The digits CNN config; ``arg`` may be ``runlocal``."""
    args = parse_arg(arg, runlocal=False)
    config = defaults.classification(
        defaults.data("digits", pp_train="random_crop(8, pad=1)|normalize"),
        {"name": "cnn", "features": (32, 64), "convs_per_stage": 2, "dense": 128, "dropout": 0.3, "norm": "batch"},
    )
    config.optim.update(name="adam", lr=3e-3, schedule="cosine")
    config.update(total_epochs=40.0, eval_every_epochs=2.0, log_every_steps=20)
    if args.runlocal:  # a quick check of the whole flow, seconds not minutes
        config.model.update(features=(16, 32), dense=64)
        config.update(total_epochs=2.0, eval_every_epochs=1.0, log_every_steps=5)
    return config

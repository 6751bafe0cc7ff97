"""Multi-layer perceptron on digits.

Run:
  python launch.py --config experiments/digits_mlp.py --workdir runs/digits_mlp
  python launch.py --config experiments/digits_mlp.py:activation=sigmoid

Reaches 96.48 ± 0.42 % test accuracy (360 images, checkpoint chosen on validation; ReLU, 256 hidden
units, seeds 0-2), ~14 s a run on a 2-core CPU, start-up and compilation included
(docs/results.md#digits_mlp).
"""

from __future__ import annotations

import ml_collections

from mlcv import defaults
from mlcv.config import parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """An MLP on the digits CNN's loop; args ``activation=`` (relu, sigmoid, ...), ``runlocal``."""
    args = parse_arg(arg, activation="relu", runlocal=False)
    config = defaults.classification(
        defaults.data("digits", pp_train="normalize"),  # 1-pixel shifts cost this MLP ~4 points of test accuracy
        {"name": "mlp", "hidden": (256,), "activation": args.activation, "dropout": 0.2},
    )
    config.optim.update(name="adam", lr=3e-3, schedule="cosine")
    config.update(total_epochs=40.0, eval_every_epochs=2.0, log_every_steps=20)
    if args.runlocal:  # a quick check of the whole flow, seconds not minutes
        config.update(total_epochs=2.0, eval_every_epochs=1.0, log_every_steps=5)
    return config

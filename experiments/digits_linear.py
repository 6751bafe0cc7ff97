"""Linear (affine) classifier on digits, with softmax cross-entropy or the course's RMSE loss.

Run:
  python launch.py --config experiments/digits_linear.py --workdir runs/digits_linear
  python launch.py --config experiments/digits_linear.py:loss=rmse --workdir runs/digits_linear_rmse

Reaches (test split of 360 images, checkpoint chosen on validation; seeds 0-2, 2-core CPU):
  softmax cross-entropy: 96.11 ± 0.00 % test accuracy, ~13 s a run;
  RMSE to one-hot (loss=rmse): 91.67 ± 0.28 %, ~12 s a run.
Newton's method and why every seed ties: docs/results.md#digits_linear.
"""

from __future__ import annotations

import ml_collections

from mlcv import defaults
from mlcv.config import parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """A linear model on the digits CNN's loop; args ``loss=`` (softmax_xent, rmse), ``runlocal``."""
    args = parse_arg(arg, loss="softmax_xent", runlocal=False)
    # No random crop: a linear model gains nothing from shifted digits.
    config = defaults.classification(defaults.data("digits", pp_train="normalize"), {"name": "linear"}, loss=args.loss)
    config.optim.update(name="adam", lr=1e-2, schedule="cosine")
    config.update(total_epochs=40.0, eval_every_epochs=2.0, log_every_steps=20)
    if args.runlocal:  # a quick check of the whole flow, seconds not minutes
        config.update(total_epochs=2.0, eval_every_epochs=1.0, log_every_steps=5)
    return config

"""Linear (affine) classifier on digits, with softmax cross-entropy or the course's RMSE loss.

Run:
  python launch.py --config experiments/digits_linear.py --workdir runs/digits_linear
  python launch.py --config experiments/digits_linear.py:loss=rmse --workdir runs/digits_linear_rmse

Reaches (test split of 360 images, checkpoint chosen on validation):
  softmax cross-entropy: 96.11 ± 0.00 % test accuracy (seeds 0-2; the problem is convex,
    so every seed reaches the same predictions), ~13 s a run on a 2-core CPU.
  RMSE to one-hot (loss=rmse): 91.67 ± 0.28 % (seeds 0-2), ~12 s a run.
  Newton's method (--config.optim.name=newton --config.optim.lr=1.0 --config.optim.schedule=constant
    --config.total_steps=20 --config.data.batch_size=256; damping 0.1): 96.39 % after 20 steps
    (seed 0, one run), 6 s.
"""

from __future__ import annotations

import ml_collections

from experiments import digits_cnn
from mlcv.config import parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The digits loop of ``digits_cnn`` with a linear model; args ``loss=``, ``runlocal``."""
    args = parse_arg(arg, loss="softmax_xent", runlocal=False)
    config = digits_cnn.get_config("runlocal" if args.runlocal else None)
    config.loss = args.loss
    config.model = ml_collections.ConfigDict({"name": "linear"})
    config.data.pp_train = "normalize"  # a linear model gains nothing from shifted digits
    config.optim.lr = 1e-2
    return config

"""A linear classifier on two concentric circles, on Cartesian or on polar features (course §5).

Run:
  python launch.py --config experiments/circles_polar.py --workdir runs/circles_cartesian
  python launch.py --config experiments/circles_polar.py:features=polar --workdir runs/circles_polar

Reaches (test split of 500 points, checkpoint chosen on validation; seeds 0-2, 2-core CPU, 17-33 s a run):
  features=cartesian (x, y): 62.87 ± 1.01 % test accuracy; the loss stays at ln 2 (chance): no line separates
    the circles, and the checkpoint chosen on validation is a near-zero line that cuts off a cap of the outer one;
  features=polar (r, θ): 99.00 ± 0.00 %: the classifier thresholds the radius.
Decision regions of both in the (x, y) plane, and how to draw them: docs/circles_polar.md.
"""

from __future__ import annotations

import ml_collections

from mlcv import defaults
from mlcv.config import ConfigError, parse_arg

# The preprocessing of each feature set: the dataset's points are (x, y); the ``polar`` op maps them to (r, θ).
_PP = {"cartesian": "", "polar": "polar"}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The digits linear classifier's recipe on ``circles``; args ``features=`` (cartesian, polar), ``runlocal``."""
    args = parse_arg(arg, features="cartesian", runlocal=False)
    if args.features not in _PP:
        raise ConfigError(f"features={args.features!r}: valid values are {', '.join(_PP)}")
    pp = _PP[args.features]
    config = defaults.classification(
        defaults.data("circles", pp_train=pp, pp_eval=pp), {"name": "linear"}, loss="softmax_xent"
    )
    config.optim.update(name="adam", lr=1e-2, schedule="cosine")
    # 800 points in batches of 64: 12 full batches an epoch, 480 steps in all.
    config.update(total_epochs=40.0, eval_every_epochs=2.0, log_every_steps=20)
    if args.runlocal:  # a quick check of the whole flow, seconds not minutes
        config.update(total_epochs=2.0, eval_every_epochs=1.0, log_every_steps=5)
    return config

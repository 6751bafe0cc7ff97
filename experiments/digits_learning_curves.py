"""Learning curves on digits (course §2.2, §8.1): training and validation error against capacity and data.

Run (one command; an interrupted run resumes where it stopped), then the plot and the table:
  python launch.py --config experiments/digits_learning_curves.py --sweep --workdir docs/digits_learning_curves
  python -m mlcv.orchestration.learning_curves docs/digits_learning_curves --png docs/digits_learning_curves.png
  python launch.py --config experiments/digits_learning_curves.py:runlocal --sweep   # 4 tiny runs

One-hidden-layer ReLU MLPs, no dropout, weight decay, augmentation or checkpoint selection (validation once, at
the end); training error: the final weights' on their training images (``config.evaluate_train``). Every run:
400 Adam steps (3e-3, cosine). Points (row ids ``size=n,width=w``), seeds 0-2: width 1-1024 on 1,257 images, n
25-1,257 at width 256, width 2-1024 on 100 images; 10 min 45 s for the 57 runs on a 2-core CPU. Train / validation
error %: width 8 7.13 / 7.78 (under-fitting), 1024 0.00 / 1.11; 100 images, width >= 8: 0-0.33 / 15.19-19.63
(over-fitting); width 256 on 25 images 0 / 41.30, on 800 0 / 1.30. Table, plot, notes: docs/digits_learning_curves.md.
"""

from __future__ import annotations

import ml_collections

from mlcv import defaults
from mlcv.config import parse_arg
from mlcv.orchestration.ablation import Row

FULL = 1257  # the digits training split
WIDTHS = (1, 2, 4, 8, 16, 32, 64, 256, 1024)
SIZES = (25, 50, 100, 200, 400, 800, FULL)
SMALL, SMALL_WIDTHS = 100, (2, 8, 32, 256, 1024)  # capacity again where data is scarce


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Width 256 on the whole training split; ``arg`` may be ``runlocal`` (20 steps)."""
    args = parse_arg(arg, runlocal=False)
    steps = 20 if args.runlocal else 400
    config = defaults.classification(
        defaults.data("digits", pp_train="normalize"),
        {"name": "mlp", "hidden": (256,), "activation": "relu", "dropout": 0.0},
        total_epochs=None,
        total_steps=steps,
        eval_every_epochs=None,
        eval_every_steps=steps,  # once, at the end: the last weights, not the best on validation
        log_every_steps=steps // 10,
    )
    config.update(tensorboard=False, evaluate_train=True)
    config.checkpoint.keep = 1
    return config


def get_ablation(arg: str | None = None) -> list[Row]:
    """One row per (size, width) point, seeds 0-2; ``runlocal``: four points, seed 0."""
    args = parse_arg(arg, runlocal=False)
    points = [(FULL, w) for w in WIDTHS] + [(n, 256) for n in SIZES] + [(SMALL, w) for w in SMALL_WIDTHS]
    if args.runlocal:
        points = [(FULL, 4), (FULL, 256), (50, 256), (100, 256)]  # one curve, along size
    seeds = (0,) if args.runlocal else (0, 1, 2)
    rows = []
    for n, w in dict.fromkeys(points):  # the base point (1,257, 256) and (100, 256) sit on two curves
        # A batch cannot exceed the training set: the 25 and 50 image sets train on whole-set batches.
        over = {"data.train_split": f"train[:{n}]", "data.batch_size": min(64, n), "model.hidden": (w,)}
        rows.append(Row(f"size={n},width={w}", "learning curves", f"width {w}, {n} images", over, seeds))
    return rows

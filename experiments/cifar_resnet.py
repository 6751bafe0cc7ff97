"""CIFAR-10 ResNet-20/32/44/56/110 with He et al. 2016's recipe (Deep Residual Learning, section 4.2).

Run (needs the cifar10 TFDS data: downloaded on first use; an accelerator makes it hours, not days):
  python launch.py --config experiments/cifar_resnet.py:depth=56 --workdir runs/cifar_resnet56
  python launch.py --config experiments/cifar_resnet.py:depth=20,runlocal   # a few steps, a smoke test

Recipe: 45k/5k train/validation split, batch 128, SGD momentum 0.9, lr 0.1 divided by 10 at 32k and 48k
iterations, 64k iterations, weight decay 1e-4 as an L2 term (the paper's, coupled), no decay on biases and
BN parameters, flip + 4-pixel-pad random crop, per-channel normalization, option-A (parameter-free) shortcuts
as in the paper; ResNet-110 warms up at lr 0.01 first (the paper: 400 iterations at 0.01, here a linear
warm-up over 400 iterations).

Should reach the published test errors: 8.75 / 7.51 / 7.17 / 6.97 / 6.43 % for depth 20 / 32 / 44 / 56 / 110
(the paper trains on all 50k images; with 45k, expect a few tenths of a point more). Not yet measured: this
machine has no internet for the data and no accelerator.
"""

from __future__ import annotations

import ml_collections

from experiments import digits_cnn
from mlcv.config import parse_arg

DEPTHS = (20, 32, 44, 56, 110)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The recipe for ``depth`` (20, 32, 44, 56 or 110); ``runlocal`` shrinks it to a few steps."""
    args = parse_arg(arg, depth=20, runlocal=False)
    if args.depth not in DEPTHS:
        raise ValueError(f"depth must be one of {DEPTHS}, not {args.depth}")
    config = digits_cnn.get_config()
    config.data.name = "cifar10"
    config.data.batch_size = 128
    config.data.eval_batch_size = 1000
    config.data.pp_train = "flip_lr|random_crop(32, pad=4)|normalize"
    config.data.pp_eval = "normalize"
    config.model = ml_collections.ConfigDict({"name": f"resnet{args.depth}", "shortcut": "A"})
    config.optim.name = "momentum"
    config.optim.momentum = 0.9
    config.optim.lr = 0.1
    config.optim.schedule = "step"
    config.optim.milestones_steps = (32_000, 48_000)
    config.optim.warmup_steps = 400 if args.depth == 110 else 0
    config.optim.l2 = 1e-4
    config.total_epochs = None
    config.total_steps = 64_000
    config.eval_every_epochs = 5.0
    config.log_every_steps = 100
    config.checkpoint.keep = 2
    if args.runlocal:
        config.data.batch_size = 8
        config.data.eval_batch_size = 16
        config.total_steps = 4
        config.eval_every_epochs = None
        config.eval_every_steps = 2
        config.log_every_steps = 2
        config.optim.milestones_steps = (2, 3)
        config.optim.warmup_steps = 0
    return config

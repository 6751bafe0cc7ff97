"""CIFAR-10 ResNet-20/32/44/56/110 with He et al. 2016's recipe (Deep Residual Learning, section 4.2).

Run (needs the cifar10 TFDS data: downloaded on first use; an accelerator makes it hours, not days):
  python launch.py --config experiments/cifar_resnet.py:depth=56 --workdir runs/cifar_resnet56
  python launch.py --config experiments/cifar_resnet.py:depth=20,runlocal   # a few steps, a smoke test

Recipe: 45k/5k train/validation, batch 128, SGD momentum 0.9, lr 0.1 /10 at 32k and 48k of 64k iterations,
L2 1e-4 (not on biases and BN), flip + 4-pixel-pad crop, option-A shortcuts; ResNet-110 warms up 400 steps.
Not yet measured (no data, no accelerator here); the paper's test errors, 8.75 / 7.51 / 7.17 / 6.97 / 6.43 %
for depth 20 / 32 / 44 / 56 / 110, are in docs/results.md#cifar_resnet.
"""

from __future__ import annotations

import ml_collections

from mlcv import defaults
from mlcv.config import parse_arg

DEPTHS = (20, 32, 44, 56, 110)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The recipe for ``depth`` (20, 32, 44, 56 or 110); ``runlocal`` shrinks it to a few steps."""
    args = parse_arg(arg, depth=20, runlocal=False)
    if args.depth not in DEPTHS:
        raise ValueError(f"depth must be one of {DEPTHS}, not {args.depth}")
    pp_train = "flip_lr|random_crop(32, pad=4)|normalize"
    data = defaults.data("cifar10", pp_train=pp_train, batch_size=128, eval_batch_size=1000)
    config = defaults.classification(data, {"name": f"resnet{args.depth}", "shortcut": "A"})
    config.optim.update(name="momentum", momentum=0.9, lr=0.1, schedule="step", milestones_steps=(32_000, 48_000))
    config.optim.update(warmup_steps=400 if args.depth == 110 else 0, l2=1e-4)  # the paper's L2: coupled
    config.update(total_epochs=None, total_steps=64_000, eval_every_epochs=5.0, log_every_steps=100)
    config.checkpoint.keep = 2
    if args.runlocal:
        config.data.update(batch_size=8, eval_batch_size=16)
        config.update(total_steps=4, eval_every_epochs=None, eval_every_steps=2, log_every_steps=2)
        config.optim.update(milestones_steps=(2, 3), warmup_steps=0)
    return config

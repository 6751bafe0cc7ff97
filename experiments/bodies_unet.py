"""Body-part segmentation of the synthetic depth images with a U-Net (course §11.3), against the forest's 84.3 %.

Run:
  python launch.py --config experiments/bodies_unet.py --workdir runs/bodies_unet
  python launch.py --config experiments/bodies_unet.py:runlocal --workdir runs/bodies_unet_local

experiments/bodies_fcn.py with mlcv.models.unet.UNetSmall in place of the small FCN: the same images (the forest's
seed 0: 400 training, 50 validation, 100 test), augmentation, loss, schedule (Adam 3e-3 cosine, 4,000 steps of 8)
and metric (the mean IoU of the 10 parts, background left out, as the forest reports it). U-Net: 16 channels at
64x64, four poolings to 256 channels at 4x4, 2x2 stride-2 transposed convolutions, concatenated skips.

Reaches: not measured yet.
"""

from __future__ import annotations

import ml_collections

from experiments import bodies_fcn
from mlcv.config import parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The body-part U-Net config; ``arg`` may be ``runlocal`` (a few seconds)."""
    args = parse_arg(arg, runlocal=False)
    config = bodies_fcn.get_config(arg)  # its data, augmentation, schedule and metric
    config.model = {"name": "_unet_tiny" if args.runlocal else "unet_small"}
    return config

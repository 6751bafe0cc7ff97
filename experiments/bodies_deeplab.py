"""Body-part segmentation of the synthetic depth images with DeepLab v3 (course §11.3), against the forest's 84.3 %.

Run:
  python launch.py --config experiments/bodies_deeplab.py --workdir runs/bodies_deeplab
  python launch.py --config experiments/bodies_deeplab.py:runlocal --workdir runs/bodies_deeplab_local

experiments/bodies_fcn.py with mlcv.models.deeplab.DeepLabSmall in place of the small FCN: the same images (the
forest's seed 0: 400 training, 50 validation, 100 test), augmentation, loss, schedule (Adam 3e-3 cosine, 4,000
steps of 8) and metric (the mean IoU of the 10 parts, background left out, as the forest reports it). DeepLab: a
basic-block ResNet (16-128 channels) dilated to output stride 8 (an 8x8 map), ASPP of dilations 2, 4, 6 and image
pooling, bilinear upsampling x8 of the class scores (v3 has no decoder).

Reaches: not measured yet.
"""

from __future__ import annotations

import ml_collections

from experiments import bodies_fcn
from mlcv.config import parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The body-part DeepLab config; ``arg`` may be ``runlocal`` (a few seconds)."""
    args = parse_arg(arg, runlocal=False)
    config = bodies_fcn.get_config(arg)  # its data, augmentation, schedule and metric
    config.model = {"name": "_deeplab_tiny" if args.runlocal else "deeplab_small"}
    return config

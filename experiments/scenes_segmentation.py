"""Semantic segmentation of the digit scenes (course §11.3): FCN-32s vs FCN-16s vs FCN-8s vs U-Net vs DeepLab.

Run (one command; an interrupted run resumes where it stopped):
  python launch.py --config experiments/scenes_segmentation.py --sweep --workdir docs/scenes_segmentation
  python launch.py --config experiments/scenes_segmentation.py:runlocal --sweep   # tiny models, 6 steps
  python launch.py --config experiments/scenes_segmentation.py:model=unet --workdir runs/scenes_unet

Every row trains a different network on the same data, loss and step budget (mlcv.defaults.scenes_segmenter: 96 px
scenes, 11 classes with background, per-pixel cross-entropy, Adam 2e-3 cosine, 1500 steps of 16, for the 2-core CPU's
time), over seeds 0-2.
The FCNs share one VGG-style backbone with batch normalization (16-128 channels, five poolings; fc6 3x3 and fc7 of
256 channels on the 3x3 pool5 map) and differ only in their skips: none (32s), pool4 (16s), pool4 and pool3 (8s).
U-Net: 8 channels at full resolution, four poolings to 128. DeepLab: a basic-block ResNet (16-128 channels) at output
stride 8 with ASPP of dilations 2, 4, 6 and image pooling. ``model=NAME`` runs one row as a single experiment.

Reaches (test mIoU, seeds 0-2, mean ± sample std; docs/scenes_segmentation.md): FCN-32s 7.88 % (background at
every pixel, all seeds), FCN-16s 43.13 ± 1.69, FCN-8s 56.69 ± 2.04, U-Net 10.14 ± 1.73, DeepLab 26.55 ± 2.04; boundary
mIoU (2 px band) 4.45 / 32.01 / 44.22 / 7.18 / 18.79 %. 6.5-10 min a run (FCNs, U-Net), 4.7 min (DeepLab), each beside
one Mask R-CNN run on the 2-core CPU; the 15 runs took 2.1 h.
"""

from __future__ import annotations

import ml_collections

from mlcv import defaults
from mlcv.config import parse_arg
from mlcv.orchestration.ablation import Row

_BACKBONE = (16, 16, "M", 32, 32, "M", 64, 64, "M", 128, 128, "M", 128, 128, "M")
_FCN = {"config": _BACKBONE, "batch_norm": True, "fc_features": 256, "fc_kernel": 3, "dropout": 0.5}
MODELS = {
    "fcn32s": {"name": "fcn32s", **_FCN},
    "fcn16s": {"name": "fcn16s", **_FCN},
    "fcn8s": {"name": "fcn8s", **_FCN},
    "unet": {"name": "unet", "features": 8, "depth": 4},  # unet_small's 16 channels cost 3x the FCNs' time
    "deeplab": {"name": "deeplab_small"},
}
TINY = {
    "fcn32s": {"name": "_fcn_tiny", "variant": "32s"},
    "fcn16s": {"name": "_fcn_tiny", "variant": "16s"},
    "fcn8s": {"name": "_fcn_tiny", "variant": "8s"},
    "unet": {"name": "_unet_tiny"},
    "deeplab": {"name": "_deeplab_tiny"},
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """One row: ``model`` (fcn32s, the base; fcn16s, fcn8s, unet, deeplab), ``steps`` (1500), ``runlocal``."""
    args = parse_arg(arg, runlocal=False, steps=1500, model="fcn32s")
    if args.model not in MODELS:
        raise ValueError(f"model={args.model!r}: expected one of {', '.join(MODELS)}")
    config = defaults.scenes_segmenter(runlocal=args.runlocal, steps=args.steps)
    config.model = (TINY if args.runlocal else MODELS)[args.model]
    config.update(tensorboard=False)
    config.checkpoint.keep = 1
    return config


def get_ablation(arg: str | None = None) -> list[Row]:
    """The rows of the table: the three FCNs, then U-Net and DeepLab."""
    args = parse_arg(arg, runlocal=False, steps=1500, model="fcn32s")
    seeds = (0, 1) if args.runlocal else (0, 1, 2)
    models = TINY if args.runlocal else MODELS

    def row(id_: str, group: str, title: str) -> Row:
        return Row(id_, group, title, {} if id_ == "fcn32s" else {"model": models[id_]}, seeds)

    return [
        row("fcn32s", "FCN", "FCN-32s: scores at stride 32, upsampled x32"),
        row("fcn16s", "FCN", "FCN-16s: + pool4 scores"),
        row("fcn8s", "FCN", "FCN-8s: + pool4 and pool3 scores"),
        row("unet", "encoder-decoder", "U-Net: transposed convolutions, concatenated skips"),
        row("deeplab", "dilated", "DeepLab v3: dilated ResNet at stride 8, ASPP"),
    ]

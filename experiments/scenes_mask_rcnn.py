"""Mask R-CNN on the digit scenes: Faster R-CNN with FPN plus a mask head, instance segmentation (course §11.4).

Run:
  python launch.py --config experiments/scenes_mask_rcnn.py --workdir runs/scenes_mask_rcnn
  python launch.py --config experiments/scenes_mask_rcnn.py:runlocal --workdir runs/scenes_mask_rcnn_local
  python launch.py --config experiments/scenes_mask_rcnn.py:steps=3000 --workdir runs/scenes_mask_rcnn_3000

experiments/scenes_faster_rcnn.py (the same backbone, FPN P2-P5, RPN, box head, schedule and data of
defaults.scenes_detector) with the mask branch of mlcv.models.mask_rcnn: RoIAlign 14x14 from each box's FPN level,
two 3x3 convolutions of 32 channels (the paper has four of 256, its pyramid's width; the narrower head is for this
CPU's time), a 2x2 stride-2 transposed convolution to 28x28 and one sigmoid mask per class. The pipeline keeps the
instance masks, which move with the boxes through the scale jitter and the shifted crops and are padded with them
(pad_boxes). Mask loss on the foreground RoIs (at most 16 an image), weight 1; the checkpoint is chosen on
validation mask AP; box AP (ap) and mask AP (mask_ap, mask_ap50, ...) are both reported.

Reaches (test split, 1500 steps, seeds 0-2, mean ± sample std; mask AP 54.89 / 55.40 / 55.95): mask AP 55.4 ± 0.5 %,
box AP 61.3 ± 0.5 % (box AP50 89.5 ± 0.6 %). Masks cost little accuracy at AP50 (mask AP50 87.4 ± 0.6 %) and more at
AP75 (mask 63.8 ± 0.9 % against box 74.4 ± 1.5 %). Each run took 33-41 min of training (10-12 images/s, mostly
beside one other run on the 2-core CPU); Faster R-CNN's step trains at 55 images/s alone; where the mask branch's
time goes was not profiled. Faster R-CNN without the mask head reaches box AP 67.9 % at 3000 steps
(experiments/scenes_faster_rcnn.py), twice this budget.
"""

from __future__ import annotations

import ml_collections

from experiments import scenes_faster_rcnn
from mlcv.config import parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The Mask R-CNN digit-scenes config; ``arg`` may hold ``runlocal`` (a few seconds) and ``steps`` (1500)."""
    args = parse_arg(arg, runlocal=False, steps=1500)
    # Faster R-CNN's backbone, RPN, box head, data and schedule; 1500 steps as R-CNN's and Fast R-CNN's, for CPU time.
    config = scenes_faster_rcnn.get_config("runlocal" if args.runlocal else None)
    if not args.runlocal:
        config.total_steps = args.steps
    config.task = "mask_rcnn"
    for key in ("pp_train", "pp_eval"):  # the detectors' keep(...) drops the masks
        config.data[key] = config.data[key].replace("'box_labels')", "'box_labels', 'masks')", 1)
    config.early_stopping.metric = "mask_ap"
    config.model.update(name="mask_rcnn", mask_features=32, mask_convs=2)
    config.detection.mask_weight = 1.0
    if args.runlocal:  # a quick check of the whole flow: 32 training images, 6 steps
        config.model = {"name": "_mask_rcnn_tiny"}
    return config

"""R-CNN on the digit scenes: selective search proposals, each warped with context and classified by a CNN.

Run:
  python launch.py --config experiments/scenes_rcnn.py --workdir runs/scenes_rcnn
  python launch.py --config experiments/scenes_rcnn.py:runlocal --workdir runs/scenes_rcnn_local
Ablations (course §10.2): --config.model.context_pixels=0 (the tight box warped, no context),
--config.detection.box_weight=0 (no box regression), --config.detection.box_loss=l2 (R-CNN's squared error).

The data pipeline, proposals, labels and schedule of experiments/scenes_fast_rcnn.py, so that the two compare:
the same CNN (three stages of two 3x3 conv-BN-ReLU, 32, 64, 128 channels) and heads, but run on every region
cut from the image: each proposal dilated by 16 * 32 / 227 = 2.26 px of context in the warped frame (the
paper's 16 of 227) and warped bilinearly to 32x32, whatever its aspect ratio (mlcv.models.rcnn). The course's
R-CNN, not the paper's: the softmax over 11 classes and the class-specific box regression are trained with
the CNN, instead of SVMs on fc7 features and a ridge regressor on pool5. Evaluation runs the CNN on all 300
warps of an image (15,000 a batch of 50), Fast R-CNN's on each image once.

Reaches: not measured yet. The model's forward and backward pass on 16 images x 64 regions take 5.5 s against
Fast R-CNN's 1.7 s (shared 2-core CPU): the CNN runs on 1,024 warps of 32x32 instead of 16 images of 96x96.
"""

from __future__ import annotations

import ml_collections

from mlcv import defaults
from mlcv.config import parse_arg

# Scenes hold at most 6 digits; 8 rows leave room and keep the batches dense.
MAX_BOXES = 8
# The fast mode finds 97.6 % of the digits at IoU 0.5 among its 300 best boxes (mlcv.ops.selective_search).
PROPOSALS = 300


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The R-CNN digit-scenes config; ``arg`` may be ``runlocal`` (a few seconds)."""
    args = parse_arg(arg, runlocal=False)
    config = defaults.training(
        total_epochs=None, total_steps=3000, eval_every_epochs=None, eval_every_steps=500, log_every_steps=100
    )
    config.early_stopping.update(metric="ap", mode="max")
    config.optim.update(name="adam", lr=2e-3, schedule="cosine", warmup_steps=100, weight_decay=1e-4)
    config.task = "rcnn"
    config.data = defaults.detection_data(
        "digit_scenes", size=96, max_boxes=MAX_BOXES, scale=(0.8, 1.25), pad=8, batch_size=16, eval_batch_size=50
    )
    for key in ("pp_train", "pp_eval"):  # proposals of the stored image, before the ops that move boxes
        keep, rest = config.data[key].split("|", 1)
        config.data[key] = f"{keep}|selective_search({PROPOSALS})|{rest}"
    config.model = {"name": "rcnn", "warp_size": 32, "features": (32, 64, 128), "hidden": (256, 256)}
    config.detection = {"rois_per_image": 64, "background_iou_low": 0.0, "nms_threshold": 0.5, "max_detections": 100}
    if args.runlocal:  # a quick check of the whole flow: 32 training images, 6 steps
        config.data.train_split = "train[:32]"
        config.data.validation_split = "validation[:20]"
        config.data.test_split = "test[:20]"
        config.model = {"name": "_rcnn_tiny"}
        config.update(total_steps=6, eval_every_steps=3, log_every_steps=3)
    return config

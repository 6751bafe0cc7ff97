"""YOLOv3 on the digit scenes: nine k-means priors at three scales, objectness x class sigmoids, class-aware NMS.

Run:
  python launch.py --config experiments/scenes_yolov3.py --workdir runs/scenes_yolov3
  python launch.py --config experiments/scenes_yolov3.py:runlocal --workdir runs/scenes_yolov3_local
Ablations (course §10.2): --config.detection.box_loss=sse (the paper's squared error on the box),
--config.detection.ignore_iou=1.0 (every unassigned prediction a negative).

The data pipeline and schedule of experiments/scenes_retinanet.py and scenes_centernet.py, so that the detectors
compare. YOLOv3 of mlcv.models.yolov3: 5 residual stages, scales of strides 8, 16, 32 (12x12, 6x6, 3x3 cells),
top-down path by concatenation, blocks of 64 channels; 567 predictions an image. PRIORS are
mlcv.ops.anchor_kmeans.kmeans_anchors(k=9, seed=0) of the 7,032 digit_scenes training boxes (mean IoU 0.871 with
the nearest prior; tests/tasks/test_yolov3.py recomputes them).

Reaches (seed 0 only): test AP 13.3 %, AP50 29.3 %, AP75 9.5 %, 19.1 min of training beside one other job; far
below RetinaNet on this budget (one positive prediction an object learns the classes slowly), AP still rising.
"""

from __future__ import annotations

import ml_collections

from mlcv import defaults
from mlcv.config import parse_arg

# Scenes hold at most 6 digits; 8 rows leave room and keep the batches dense.
MAX_BOXES = 8
# (h, w) in pixels, by area: 3 on stride 8, 3 on 16, 3 on 32.
PRIORS = ((19.1, 11.0), (17.2, 14.8), (23.1, 13.8), (21.6, 18.6), (29.5, 16.0), (26.8, 21.1), (35.4, 20.5),
          (29.1, 26.5), (36.7, 26.4))  # fmt: skip


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The YOLOv3 digit-scenes config; ``arg`` may be ``runlocal`` (a few seconds)."""
    args = parse_arg(arg, runlocal=False)
    config = defaults.training(
        total_epochs=None, total_steps=3000, eval_every_epochs=None, eval_every_steps=500, log_every_steps=100
    )
    config.early_stopping.update(metric="ap", mode="max")
    config.optim.update(name="adam", lr=2e-3, schedule="cosine", warmup_steps=100, weight_decay=1e-4)
    config.task = "yolov3"
    config.data = defaults.detection_data(
        "digit_scenes", size=96, max_boxes=MAX_BOXES, scale=(0.8, 1.25), pad=8, batch_size=16, eval_batch_size=50
    )
    config.model = {"name": "yolov3", "stage_features": (32, 64, 96, 128, 128), "head_features": (64, 64, 64)}
    config.detection = {
        "anchors": PRIORS,
        "ignore_iou": 0.5,
        "box_loss": "bce",
        "nms_threshold": 0.5,
        "score_threshold": 0.01,
        "max_detections": 100,
    }
    if args.runlocal:  # a quick check of the whole flow: 32 training images, 6 steps
        config.data.train_split = "train[:32]"
        config.data.validation_split = "validation[:20]"
        config.data.test_split = "test[:20]"
        config.model = {"name": "_yolov3_tiny"}
        config.update(total_steps=6, eval_every_steps=3, log_every_steps=3)
    return config

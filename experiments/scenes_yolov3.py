"""YOLOv3 on the digit scenes: nine k-means priors at three scales, objectness x class sigmoids, class-aware NMS.

Run:
  python launch.py --config experiments/scenes_yolov3.py --workdir runs/scenes_yolov3
  python launch.py --config experiments/scenes_yolov3.py:runlocal --workdir runs/scenes_yolov3_local
  python launch.py --config experiments/scenes_yolov3.py:kmeans --workdir ...   # PRIORS fitted at the start
Ablations (course §10.2): --config.detection.assign_iou=1.0 (the paper's one prior an object),
--config.detection.box_loss=sse (the paper's squared error on the box), --config.detection.ignore_iou=1.0.

The data pipeline and schedule of experiments/scenes_retinanet.py and scenes_centernet.py, so that the detectors
compare. YOLOv3 of mlcv.models.yolov3: 5 residual stages, scales of strides 8, 16, 32 (12x12, 6x6, 3x3 cells),
top-down path by concatenation, blocks of 64 channels; 567 predictions an image. PRIORS are
mlcv.ops.anchor_kmeans.kmeans_anchors(k=9, seed=0) of the 7,032 digit_scenes training boxes (mean IoU 0.871 with
the nearest prior; tests/tasks/test_yolov3.py recomputes them; `:kmeans` fits them when the run starts, in the
frame of pp_eval, the same boxes). Departure from the paper: assign_iou=0.5 gives
each box every prior of shape IoU > 0.5 too (YOLOv4's rule; 5.7 priors a training box instead of 1): with the
paper's one prior, seed 0 reached test AP 13.3 % (AP50 29.3 %), the classes learnt from 3-4 predictions an image.

Reaches: test AP 40.8 ± 0.9 %, AP50 78.8 ± 0.4 %, AP75 36.0 ± 1.6 % (seeds 0-2: AP 40.7 / 39.8 / 41.7), 10.3-11.4
min of training (12.6-13.7 min wall) beside one other run; inference 8.3 ms an image (benchmarks/
detection_inference.py). Far below RetinaNet's 58.5 % on this budget; validation AP still rising at step 3000.
"""

from __future__ import annotations

import ml_collections

from mlcv import defaults
from mlcv.config import parse_arg

# (h, w) in pixels, by area: 3 on stride 8, 3 on 16, 3 on 32.
PRIORS = ((19.1, 11.0), (17.2, 14.8), (23.1, 13.8), (21.6, 18.6), (29.5, 16.0), (26.8, 21.1), (35.4, 20.5),
          (29.1, 26.5), (36.7, 26.4))  # fmt: skip


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The YOLOv3 digit-scenes config; ``arg`` may hold ``runlocal`` (a few seconds) and ``kmeans`` (fit the priors
    when the run starts)."""
    args = parse_arg(arg, runlocal=False, kmeans=False)
    config = defaults.scenes_detector("yolov3", runlocal=args.runlocal)
    config.model = {"name": "yolov3", "stage_features": (32, 64, 96, 128, 128), "head_features": (64, 64, 64)}
    config.detection = {
        "anchors": "kmeans" if args.kmeans else PRIORS,
        "ignore_iou": 0.5,
        "assign_iou": 0.5,
        "box_loss": "bce",
        "nms_threshold": 0.5,
        "score_threshold": 0.01,
        "max_detections": 100,
    }
    if args.runlocal:  # a quick check of the whole flow: 32 training images, 6 steps
        config.model = {"name": "_yolov3_tiny"}
    return config

"""Faster R-CNN with FPN on the digit scenes: RPN proposals, RoIAlign on P2-P5, a two-FC box head.

Run:
  python launch.py --config experiments/scenes_faster_rcnn.py --workdir runs/scenes_faster_rcnn
  python launch.py --config experiments/scenes_faster_rcnn.py:runlocal --workdir runs/scenes_faster_rcnn_local
Ablation (course §10.2): --config.model.canonical_size=224.0 (FPN's eq. 1 unscaled: every digit pools from P2).

The data pipeline and schedule of experiments/scenes_retinanet.py, so that the detectors compare. Faster R-CNN
of mlcv.models.faster_rcnn: the same 5 residual stages, FPN P2-P5 (24x24 to 3x3 cells, 64 channels), an RPN of
one 3x3 conv shared by the levels, anchors 16, 32, 64, 128 px (one a level) x ratios 0.5, 1, 2 (2,295 an image);
256 sampled anchors an image; proposals 1000 -> NMS 0.7 -> 256 (training) / 500 -> 128 (test); 64 RoIs an image
at 25 % foreground (Fast R-CNN's 64: a scene holds 3.5 digits; 128 cost 1.4x the CPU time a step); RoIAlign 7x7
from the level of FPN's eq. 1 with canonical size 56 px; two FC layers of 256; box weights (10, 10, 5, 5);
class-aware NMS 0.5. A training step of 16 scenes costs 2.5-3x RetinaNet's CPU time (P2 and RoIAlign).

Reaches (seeds 0-2, the two-stage row of docs/scenes_detection_ablation.md, the same config): test AP
67.9 ± 0.4 %, AP50 94.5 ± 0.5, AP75 83.4 ± 0.5 (AP 68.1 / 67.5 / 68.2); 55 images/s training alone (3000 steps: 14.5
min), 19.7, 28.6 and 19.4 min measured, mostly beside another run; inference 21.5 ms an image (RetinaNet 5.4 ms in
the same benchmark run).
"""

from __future__ import annotations

import ml_collections

from mlcv import defaults
from mlcv.config import parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The Faster R-CNN digit-scenes config; ``arg`` may be ``runlocal`` (a few seconds)."""
    args = parse_arg(arg, runlocal=False)
    config = defaults.scenes_detector("faster_rcnn", runlocal=args.runlocal)
    config.model = {"name": "faster_rcnn", "stage_features": (32, 64, 96, 128, 128), "canonical_size": 56.0}
    config.detection = {
        "anchor_sizes": (16.0, 32.0, 64.0, 128.0),
        "aspect_ratios": (0.5, 1.0, 2.0),
        "post_nms_top_k_train": 256,
        "post_nms_top_k_test": 128,
        "roi_batch_size": 64,
        "roi_positive_fraction": 0.25,
        "nms_threshold": 0.5,
        "max_detections": 100,
    }
    # As RetinaNet's (experiments/scenes_retinanet.py), so that this is the ablation's two-stage row exactly.
    config.optim.grad_clip_norm = 5.0
    if args.runlocal:  # a quick check of the whole flow: 32 training images, 6 steps
        config.model = {"name": "_faster_rcnn_tiny"}
    return config

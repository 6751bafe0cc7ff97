"""Fast R-CNN on the digit scenes: selective search proposals, the CNN once an image, RoIPool, two sibling heads.

Run:
  python launch.py --config experiments/scenes_fast_rcnn.py --workdir runs/scenes_fast_rcnn
  python launch.py --config experiments/scenes_fast_rcnn.py:runlocal --workdir runs/scenes_fast_rcnn_local
  python launch.py --config experiments/scenes_fast_rcnn.py:steps=3000 --workdir runs/scenes_fast_rcnn_3000
Ablations (course §10.2): --config.detection.background_iou_low=0.1 (the paper's [0.1, 0.5) background),
--config.detection.box_weight=0 (no box regression), --config.detection.rois_per_image=16.

The data pipeline and schedule of experiments/scenes_retinanet.py, with the selective_search op (fast mode, the
300 best boxes of each stored image, cached, then moved by the scale jitter and crops like the boxes) before
them. Fast R-CNN of mlcv.models.fast_rcnn: three stages of two 3x3 conv-BN-ReLU (32, 64, 128 channels), the
last max pool replaced by RoIPool 4x4 on the stride-4 map; fc layers of 256; softmax over 11 classes and
class-specific box deltas (weights 10, 10, 5, 5; smooth L1, lambda 1). 64 regions an image at most 25 %
foreground, proposals and gt boxes labelled at IoU 0.5. Background is every region under 0.5 (R-CNN's rule):
the digits are small, and 53 % of the proposals overlap none by 0.1 (11 % by 0.5; 60 validation scenes), so the
paper's lower bound 0.1 would hide most of the photos' texture from the classifier. NMS 0.5.

Reaches test AP 57.3 ± 0.8 %, AP50 90.8 ± 0.4, AP75 65.9 ± 1.3 (seeds 0-2: 58.03 / 56.43 / 57.37; 1500 steps, the
others' 3000 would take ~45 min a seed: 0.8 s a step). Training 1044 s alone (seed 2, 23 images/s), 1413-1444 s
beside other jobs; wall 1322-1928 s (the first run also searched the 2,700 images' proposals). Inference 124 ms an
image (network, decoding, NMS of 1000 candidates; benchmarks/detection_inference.py beside a training run), plus
the selective search, 86-134 ms an image (cached). Below R-CNN's 64.6 % (experiments/scenes_rcnn.py), mostly AP75.
"""

from __future__ import annotations

import ml_collections

from mlcv import defaults
from mlcv.config import parse_arg

# The fast mode finds 97.6 % of the digits at IoU 0.5 among its 300 best boxes (mlcv.ops.selective_search).
PROPOSALS = 300


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The Fast R-CNN digit-scenes config; ``arg`` may hold ``runlocal`` (a few seconds) and ``steps`` (1500)."""
    args = parse_arg(arg, runlocal=False, steps=1500)
    config = defaults.scenes_detector("fast_rcnn", runlocal=args.runlocal, steps=args.steps, proposals=PROPOSALS)
    config.model = {"name": "fast_rcnn", "features": (32, 64, 128), "pool_size": 4, "hidden": (256, 256)}
    config.detection = {"rois_per_image": 64, "background_iou_low": 0.0, "nms_threshold": 0.5, "max_detections": 100}
    if args.runlocal:  # a quick check of the whole flow: 32 training images, 6 steps
        config.model = {"name": "_fast_rcnn_tiny"}
    return config

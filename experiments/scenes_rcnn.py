"""R-CNN on the digit scenes: selective search proposals, each warped with context and classified by a CNN.

Run:
  python launch.py --config experiments/scenes_rcnn.py --workdir runs/scenes_rcnn
  python launch.py --config experiments/scenes_rcnn.py:runlocal --workdir runs/scenes_rcnn_local
  python launch.py --config experiments/scenes_rcnn.py:steps=3000 --workdir runs/scenes_rcnn_3000
Ablations (course §10.2): --config.model.context_pixels=0 (the tight box warped, no context),
--config.detection.box_weight=0 (no box regression), --config.detection.box_loss=l2 (R-CNN's squared error).

The data pipeline, proposals, labels and schedule of experiments/scenes_fast_rcnn.py, so that the two compare:
the same CNN (three stages of two 3x3 conv-BN-ReLU, 32, 64, 128 channels) and heads, but run on every region
cut from the image: each proposal dilated by 16 * 32 / 227 = 2.26 px of context in the warped frame (the
paper's 16 of 227) and warped bilinearly to 32x32, whatever its aspect ratio (mlcv.models.rcnn). The course's
R-CNN, not the paper's: 8 regions an image (2 of them foreground at most), so that a batch of 16 images is the
paper's mini-batch of 128 windows with 32 positives (Fast R-CNN's 64 would cost 0.61 s a step against 0.094 s,
measured alone: the CNN runs on every warp); the softmax over 11 classes and the class-specific box regression
are trained with the CNN, instead of SVMs on fc7 features and a ridge regressor on pool5. Evaluation runs the
CNN on all 300 warps of an image (15,000 a batch of 50), Fast R-CNN's on each image once.

Reaches test AP 64.6 ± 0.2 %, AP50 89.9 ± 0.3, AP75 78.2 ± 0.5 (seeds 0-2: 64.75 / 64.65 / 64.42; 1500 steps),
above Fast R-CNN's 57.3 (its 4x4 RoIPool of a stride-4 map is coarse for 15-40 px digits; the 32x32 warp is not).
Training 419-700 s (wall 668-1191 s with the first run's proposals of the evaluation splits), seed 2 alone, the
others beside other jobs. Inference 268 ms an image (the CNN on 300 warps, decoding, NMS of 1000 candidates;
benchmarks/detection_inference.py beside a training run; Fast R-CNN 124 ms there), plus the selective search,
86-134 ms an image (cached across runs). A step costs 0.094 s alone at 8 regions an image, 0.61 s at 64.
"""

from __future__ import annotations

import ml_collections

from mlcv import defaults
from mlcv.config import parse_arg

# The fast mode finds 97.6 % of the digits at IoU 0.5 among its 300 best boxes (mlcv.ops.selective_search).
PROPOSALS = 300


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The R-CNN digit-scenes config; ``arg`` may hold ``runlocal`` (a few seconds) and ``steps`` (1500)."""
    args = parse_arg(arg, runlocal=False, steps=1500)
    config = defaults.scenes_detector("rcnn", runlocal=args.runlocal, steps=args.steps, proposals=PROPOSALS)
    config.model = {"name": "rcnn", "warp_size": 32, "features": (32, 64, 128), "hidden": (256, 256)}
    config.detection = {"rois_per_image": 8, "background_iou_low": 0.0, "nms_threshold": 0.5, "max_detections": 100}
    if args.runlocal:  # a quick check of the whole flow: 32 training images, 6 steps
        config.model = {"name": "_rcnn_tiny"}
    return config

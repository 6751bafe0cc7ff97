"""Learned stereo on the synthetic textured planes (course §12.1-12.2): MC-CNN, DispNet-C, GC-Net, Monodepth.

Run (the measured step counts and flags per model: docs/results.md#planes_stereo):
  python launch.py --config experiments/planes_stereo.py:model=mccnn_fast,steps=1000 --workdir runs/mccnn_fast_s0
  python launch.py --config experiments/planes_stereo.py:model=dispnet,steps=2000 --workdir runs/dispnet_s0
  python launch.py --config experiments/planes_stereo.py:model=gcnet,runlocal   # tiny model, a few steps

``stereo_planes`` (built in): 64 x 128 grey pairs of textured planes, fronto-parallel and slanted, disparities
1.7-24 px, 400 training / 50 validation / 100 test pairs; flips swap and mirror the views. MC-CNN learns a matching
cost for the classic pipeline (WTA, left-right check, sub-pixel, fill); DispNet-C and GC-Net learn from the
ground-truth disparity (L1 at every scale they predict); Monodepth sees the left image alone and
learns from the pair without any ground truth (eq. 78). The checkpoint is chosen on validation bad-2; the test
figures are bad-1/2/4, EPE and density over valid pixels, and over non-occluded ones (``*_noc``).

Reaches (seeds 0-2, 2-core CPU; commands, settings and the whole table: docs/results.md#planes_stereo): on the
real Motorcycle pair, never trained on, MC-CNN fast (``steps=1000``, 11-14 min a run) 16.02 ± 0.92 % bad-2 as
trained and 9.56 ± 1.15 % with box aggregation + SGM chosen on the planes' validation split, against NCC's
11.32 %; on the planes' test split 14.34 ± 1.52 and 9.99 ± 1.45 %. DispNet-C (``steps=2000``) 28.64 ± 1.19 % on
the planes, 87.29 ± 1.13 % on Motorcycle; GC-Net (``steps=150``, batches of 4) 35.58 ± 3.68 and 85.10 ± 2.12 %;
Monodepth (docs/planes_monodepth.md) 89.97 ± 0.65 and 100 %: its left-right term collapses it on these scenes.
"""

from __future__ import annotations

import ml_collections

from mlcv import defaults
from mlcv.config import parse_arg

MODELS = {
    "dispnet": ("disparity", {"name": "dispnet_c"}, "_dispnet_tiny"),
    "gcnet": ("disparity", {"name": "gcnet", "max_disparity": 32}, "_gcnet_tiny"),
    "monodepth": ("monodepth", {"name": "monodepth"}, "_monodepth_tiny"),
    "mccnn_fast": ("mccnn", {"name": "mccnn_fast"}, "_mccnn_fast_tiny"),
    "mccnn_accurate": ("mccnn", {"name": "mccnn_accurate"}, "_mccnn_accurate_tiny"),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Args ``model`` (a key of MODELS), ``steps`` (3000), ``runlocal``."""
    args = parse_arg(arg, model="dispnet", steps=3000, runlocal=False)
    if args.model not in MODELS:
        raise ValueError(f"model={args.model!r}: expected one of {', '.join(MODELS)}")
    task, model, tiny = MODELS[args.model]
    data = defaults.data("stereo_planes", pp_train="flip_lr|normalize", batch_size=8, eval_batch_size=25)
    config = defaults.stereo(task, data, model, total_epochs=None, total_steps=args.steps, eval_every_epochs=None)
    config.stereo.update(focal_px=100.0, baseline=0.1)  # the dataset's calibration, for the depth maps
    config.optim.update(name="adam", lr=1e-3, schedule="cosine", warmup_steps=100)
    config.update(eval_every_steps=500, log_every_steps=50, tensorboard=False)
    if args.runlocal:
        config.model = {"name": tiny}
        config.data.update(train_split="train[:16]", validation_split="validation[:8]", test_split="test[:8]")
        config.data.update(batch_size=4, eval_batch_size=4)
        config.update(total_steps=4, eval_every_steps=2, log_every_steps=2)
        config.optim.warmup_steps = 1
    return config

"""ImageNet ResNet-50: 90 epochs, batch 1024, warm-up then cosine or step, optional label smoothing.

Run (needs imagenet2012 prepared by TFDS from the manually downloaded ILSVRC2012 tar files, and
accelerators: about 7,000 accelerator-hours of a V100 class GPU, far less on a TPU slice):
  python launch.py --config experiments/imagenet_resnet50.py --workdir runs/imagenet_resnet50
  python launch.py --config experiments/imagenet_resnet50.py:schedule=step,label_smoothing=0.0
  python launch.py --config experiments/imagenet_resnet50.py:runlocal   # a few steps on tiny images

Recipe (Goyal et al. 2017, He et al. 2016): SGD momentum 0.9, lr 0.1 x batch/256, 5 warm-up epochs, cosine or
/10 at epochs 30, 60, 80; L2 1e-4 (not on biases and BN); zero-initialised last BN scale of each residual
branch; random-resized crop 224 + flip, eval on a 224 centre crop of the 256-resized image; the official
validation set is the test split, 10,009 training images are held out for model selection.
Should reach about 76.1-76.5 % top-1 with the step schedule, about 77 % with cosine and label smoothing 0.1
(published figures); not yet measured: no ImageNet, no accelerator here (docs/results.md#imagenet_resnet50).
"""

from __future__ import annotations

import ml_collections

from mlcv import defaults
from mlcv.config import parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The recipe; args ``schedule`` (cosine or step), ``label_smoothing`` (0.1), ``runlocal``."""
    args = parse_arg(arg, schedule="cosine", label_smoothing=0.1, runlocal=False)
    if args.schedule not in ("cosine", "step"):
        raise ValueError(f"schedule must be 'cosine' or 'step', not {args.schedule!r}")
    data = defaults.data(
        "imagenet2012",
        pp_train="random_resized_crop(224)|flip_lr|normalize",
        pp_eval="resize_short(256)|center_crop(224)|normalize",
        batch_size=1024,
        eval_batch_size=1024,
        worker_count=8,
    )
    model = {"name": "resnet50", "zero_init_residual": True}
    config = defaults.classification(data, model, label_smoothing=float(args.label_smoothing))
    config.optim.update(name="momentum", momentum=0.9, lr=0.4, schedule=args.schedule, l2=1e-4)
    config.optim.milestones_epochs = (30.0, 60.0, 80.0)
    # Warm-up is given in steps; 5 epochs of the 1,271,158 training images at batch 1024.
    config.optim.warmup_steps = 5 * (1_281_167 - 10_009) // 1024
    config.update(total_epochs=90.0, eval_every_epochs=1.0, log_every_steps=100)
    if args.runlocal:
        config.data.update(batch_size=4, eval_batch_size=4, worker_count=0)
        config.data.pp_train = "random_resized_crop(32)|flip_lr|normalize"
        config.data.pp_eval = "resize_short(36)|center_crop(32)|normalize"
        config.update(total_epochs=None, total_steps=2, eval_every_steps=2)
        config.optim.warmup_steps = 1
    return config

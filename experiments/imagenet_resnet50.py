"""ImageNet ResNet-50: 90 epochs, batch 1024, warm-up then cosine or step, optional label smoothing.

Run (needs imagenet2012 prepared by TFDS from the manually downloaded ILSVRC2012 tar files, and
accelerators: about 7,000 accelerator-hours of a V100 class GPU, far less on a TPU slice):
  python launch.py --config experiments/imagenet_resnet50.py --workdir runs/imagenet_resnet50
  python launch.py --config experiments/imagenet_resnet50.py:schedule=step,label_smoothing=0.0
  python launch.py --config experiments/imagenet_resnet50.py:runlocal   # a few steps on tiny images

Recipe (Goyal et al. 2017, He et al. 2016): SGD momentum 0.9, lr 0.1 x batch/256 = 0.4, 5 warm-up epochs,
then cosine (default) or /10 at epochs 30, 60 and 80; weight decay 1e-4 as an L2 term without decay on biases
and BN parameters; zero-initialised last BN scale of each residual branch; random-resized crop 224 + flip;
evaluation on a 224 centre crop of the image resized to 256. The official validation set is the test split;
10,009 training images are held out for model selection.

Should reach about 76.1-76.5 % top-1 with the step schedule and about 77 % with cosine and label smoothing 0.1
(published figures for this recipe). Not yet measured: no ImageNet and no accelerator on this machine.
"""

from __future__ import annotations

import ml_collections

from experiments import digits_cnn
from mlcv.config import parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The recipe; args ``schedule`` (cosine or step), ``label_smoothing`` (0.1), ``runlocal``."""
    args = parse_arg(arg, schedule="cosine", label_smoothing=0.1, runlocal=False)
    if args.schedule not in ("cosine", "step"):
        raise ValueError(f"schedule must be 'cosine' or 'step', not {args.schedule!r}")
    config = digits_cnn.get_config()
    config.data.name = "imagenet2012"
    config.data.batch_size = 1024
    config.data.eval_batch_size = 1024
    config.data.pp_train = "random_resized_crop(224)|flip_lr|normalize"
    config.data.pp_eval = "resize_short(256)|center_crop(224)|normalize"
    config.data.worker_count = 8
    config.model = ml_collections.ConfigDict({"name": "resnet50", "zero_init_residual": True})
    config.label_smoothing = float(args.label_smoothing)
    config.optim.name = "momentum"
    config.optim.momentum = 0.9
    config.optim.lr = 0.4
    config.optim.schedule = args.schedule
    config.optim.milestones_epochs = (30.0, 60.0, 80.0)
    config.optim.l2 = 1e-4
    config.total_epochs = 90.0
    config.eval_every_epochs = 1.0
    config.log_every_steps = 100
    # Warm-up is given in steps; 5 epochs of the 1,271,158 training images at batch 1024.
    config.optim.warmup_steps = 5 * (1_281_167 - 10_009) // 1024
    if args.runlocal:
        config.data.batch_size = 4
        config.data.eval_batch_size = 4
        config.data.worker_count = 0
        config.data.pp_train = "random_resized_crop(32)|flip_lr|normalize"
        config.data.pp_eval = "resize_short(36)|center_crop(32)|normalize"
        config.total_epochs = None
        config.total_steps = 2
        config.eval_every_steps = 2
        config.optim.warmup_steps = 1
    return config

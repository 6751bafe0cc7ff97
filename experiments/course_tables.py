"""The course's model-summary tables of AlexNet, VGG-16 and GoogLeNet at 224x224, on a machine with no dataset.

Run (each prints the table and writes it to <workdir>/layers.md; nothing is downloaded or read, the input is
declared in config.summary):
  python launch.py --config experiments/course_tables.py:alexnet --mode=summary
  python launch.py --config experiments/course_tables.py:vgg16 --mode=summary
  python launch.py --config experiments/course_tables.py:googlenet --mode=summary

Columns: kernels, kernel size, stride, padding, output HxWxC, activations, parameters (K), FLOPs (M) for a
minibatch of 128 (2 x multiply-adds, a bias add counting as one), activation memory (output and gradient) and
parameter memory (weights, gradient, momentum: 3 copies, from config.optim) in MiB. GoogLeNet's Inception
modules are one row each, as in Szegedy et al. 2015, Table 1. Totals (mult-adds an image, a bias add counting
as one; FLOPs and activation memory for the 128 images; parameter memory):
  alexnet     62,378,344 params   1.136 G mult-adds    290.8 GFLOPs   836.91 MiB    713.86 MiB
  vgg16      138,357,544 params  15.484 G mult-adds  3,963.9 GFLOPs  14,806.98 MiB  1,583.38 MiB
  googlenet    6,998,552 params   1.586 G mult-adds    406.0 GFLOPs  3,324.79 MiB     80.09 MiB
(GoogLeNet's activations: each module's output, not its branches'.) 3-5 s a table on the shared 2-core CPU,
most of it importing JAX. tests/models/test_course_tables.py checks every row against hand arithmetic and pins
the course's and the paper's errata. Training these configs needs imagenet2012 (TFDS, manual download).
"""

from __future__ import annotations

import ml_collections

from mlcv import defaults
from mlcv.config import parse_arg

MODELS = ("alexnet", "vgg16", "googlenet")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Arg: the model, one of ``alexnet``, ``vgg16``, ``googlenet``."""
    args = parse_arg(arg, **dict.fromkeys(MODELS, False))
    chosen = [name for name in MODELS if args[name]]
    if len(chosen) != 1:
        raise ValueError(f"name one model as the arg: course_tables.py:{'|'.join(MODELS)}")
    pp_eval = "resize_short(256)|center_crop(224)|normalize"
    data = defaults.data("imagenet2012", pp_train="random_resized_crop(224)|flip_lr|normalize", pp_eval=pp_eval)
    data.update(batch_size=128, eval_batch_size=128)
    config = defaults.classification(data, {"name": chosen[0]})
    # As the three were trained: SGD with momentum 0.9 (AlexNet's recipe: lr 0.01, L2 5e-4, batch 128).
    config.optim.update(name="momentum", momentum=0.9, lr=0.01, schedule="constant", l2=5e-4)
    config.summary = ml_collections.ConfigDict({"batch_size": 128, "table": "course"})
    config.summary.features = {  # ImageNet's, declared: the summary opens no dataset
        "image": {"kind": "image", "shape": (224, 224, 3), "dtype": "float32"},
        "label": {"kind": "label", "shape": (), "dtype": "int64", "num_classes": 1000},
    }
    config.summary.collapse = ("InceptionModule",) if chosen[0] == "googlenet" else ()
    return config

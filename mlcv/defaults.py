"""The shared blocks of experiment configs, so that an experiment file holds only its recipe.

An experiment file (``experiments/X.py``) starts from one of these and sets what its recipe chooses::

    config = defaults.classification(defaults.data("cifar10", pp_train=...), {"name": "resnet20"})
    config.optim.update(name="momentum", lr=0.1, schedule="step", milestones_steps=(32_000, 48_000))

- :func:`classification`: a trained classifier, :func:`training` + :func:`data` + loss, model, distillation;
- :func:`training`: what every trained model's loop reads: seed, :func:`optim`, durations, early stopping
  (model selection), checkpoints, averaging, snapshot ensembles, precision;
- :func:`data`: a trained model's data block (a dataset, its splits, batch sizes, preprocessing);
- :func:`fitted` and :func:`dataset`: the few keys a fitted method (``mlcv.classic``) shares with the rest.

Every key of these blocks is here with its default, so any setting is one ``--config.a.b=v`` away. Optional
keys the code reads only when present (``config.evals``: name -> ``dict(type=..., **kwargs)`` evaluators in
place of the task's default ones) are left out, so adding one is a visible choice of an experiment. This
module imports only ``ml_collections``: config files load without JAX.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ml_collections import ConfigDict, FieldReference
from ml_collections.config_dict import placeholder


def _typed(value: Any, field_type: type) -> FieldReference:
    """A typed field that may hold None: set by an experiment, left None by another (total_steps...)."""
    return FieldReference(value, field_type=field_type)


def _join(*parts: ConfigDict) -> ConfigDict:
    """One ConfigDict of the keys of ``parts`` in order; placeholders stay typed placeholders."""
    config = ConfigDict()
    for part in parts:
        for key, value in part.items(preserve_field_references=True):
            config[key] = value
    return config


def dataset(name: str) -> ConfigDict:
    """Where a dataset is: its ``name`` (mlcv.data's registry or a TFDS name) and ``data_dir``.

    ``data_dir`` None means the default directory of the source (TFDS's, or the built-in data).
    """
    return ConfigDict({"name": name, "data_dir": placeholder(str)})


def data(
    name: str,
    *,
    pp_train: str = "normalize",
    pp_eval: str = "normalize",
    batch_size: int = 64,
    eval_batch_size: int = 512,
    worker_count: int = 0,
) -> ConfigDict:
    """A trained model's data block: :func:`dataset` + download, splits, batch sizes, preprocessing.

    Splits "" keep the dataset's own train / validation / test split; ``pp_*`` are mlcv.data.ops
    pipelines (``"flip_lr|random_crop(32, pad=4)|normalize"``); ``worker_count`` 0 reads in-process. ``pipeline`` is
    how training batches are made (:mod:`mlcv.training.inputs`): "record" (grain, op by op, record by record),
    "batch" (the split in host memory, batch ops; the same batches bit for bit), "device" (the split and the
    augmentation on the devices) or "auto" ("batch" where it can run, else "record").
    """
    config = dataset(name)
    config.download = True
    config.train_split = ""  # "" keeps the dataset's own split
    config.validation_split = ""
    config.test_split = ""
    config.batch_size = batch_size
    config.eval_batch_size = eval_batch_size
    config.pp_train = pp_train
    config.pp_eval = pp_eval
    config.worker_count = worker_count
    config.pipeline = "auto"
    return config


def detection_data(
    name: str, *, size: int, max_boxes: int, scale: tuple[float, float], pad: int, **kwargs: Any
) -> ConfigDict:
    """:func:`data` for a detector on scenes of ``size`` px: scale jitter and shifted crops that keep the boxes right.

    ``keep`` comes first, so that the instance and semantic masks, which no detector reads, are not moved by
    every geometric op; ``pad_boxes(max_boxes)`` makes images with different box counts batch together.
    ``kwargs`` go to :func:`data` (batch sizes, workers).
    """
    keys = "keep('image', 'boxes', 'box_labels')"
    lo, hi = scale
    pp_train = f"{keys}|random_scale({lo}, {hi})|random_crop({size}, pad={pad})|pad_boxes({max_boxes})|normalize"
    return data(name, pp_train=pp_train, pp_eval=f"{keys}|pad_boxes({max_boxes})|normalize", **kwargs)


#: Where the digit-scenes detectors keep their selective search results between runs (the op's ``cache_dir``).
PROPOSAL_CACHE = "~/.cache/mlcv/selective_search"


def scenes_detector(
    task: str, *, runlocal: bool = False, steps: int = 3000, max_boxes: int = 8, proposals: int = 0
) -> ConfigDict:
    """What every detector on the digit scenes shares, so that they compare: ``steps`` of Adam 2e-3 (cosine, 100
    warm-up steps, weight decay 1e-4), the checkpoint chosen on validation AP every 500 steps, and
    :func:`detection_data` of ``digit_scenes`` (96 px, scale jitter 0.8-1.25, shifts of 8 px, batches of 16).

    ``runlocal``: 32 / 20 / 20 images and 6 steps, a check of the whole flow in seconds (the caller picks a tiny
    model). ``max_boxes``: scenes hold at most 6 digits; 8 rows leave room and keep the batches dense.
    ``proposals``: when > 0, ``selective_search(proposals)`` right after the decoding op, on the stored image
    before the ops that move boxes (R-CNN, Fast R-CNN), with its file cache in :data:`PROPOSAL_CACHE` (not for
    ``runlocal``): the search costs ~140 ms an image, ~17 min a pass over the training split on this CPU, which
    later seeds and the other proposal-based detector (same op arguments, same files) then skip.
    """
    config = training(
        total_epochs=None, total_steps=steps, eval_every_epochs=None, eval_every_steps=500, log_every_steps=100
    )
    config.early_stopping.update(metric="ap", mode="max")
    config.optim.update(name="adam", lr=2e-3, schedule="cosine", warmup_steps=100, weight_decay=1e-4)
    config.task = task
    config.data = detection_data(
        "digit_scenes", size=96, max_boxes=max_boxes, scale=(0.8, 1.25), pad=8, batch_size=16, eval_batch_size=50
    )
    if proposals:
        op = (
            f"selective_search({proposals})"
            if runlocal
            else f"selective_search({proposals}, cache_dir={PROPOSAL_CACHE!r})"
        )
        for key in ("pp_train", "pp_eval"):
            keep, rest = config.data[key].split("|", 1)
            config.data[key] = f"{keep}|{op}|{rest}"
    if runlocal:
        config.data.update(train_split="train[:32]", validation_split="validation[:20]", test_split="test[:20]")
        config.update(total_steps=6, eval_every_steps=3, log_every_steps=3)
    return config


def scenes_segmenter(*, runlocal: bool = False, steps: int = 3000) -> ConfigDict:
    """What every semantic segmenter on the digit scenes shares, so that they compare (``config.model`` is the
    caller's): ``steps`` of Adam 2e-3 (cosine, 100 warm-up steps, weight decay 1e-4) on batches of 16, the
    checkpoint chosen on validation mIoU every 500 steps, the detectors' scale jitter (0.8-1.25) and 8 px shifts
    (pixels moved in from outside get the ignore label 255), no flips (a mirrored digit is another shape).

    The mIoU averages all 11 classes, background included (PASCAL VOC's convention). ``runlocal``: 32 / 20 / 20
    images and 6 steps, a check of the whole flow in seconds (the caller picks a tiny model).
    """
    config = training(
        total_epochs=None, total_steps=steps, eval_every_epochs=None, eval_every_steps=500, log_every_steps=100
    )
    config.early_stopping.update(metric="miou", mode="max")
    config.optim.update(name="adam", lr=2e-3, schedule="cosine", warmup_steps=100, weight_decay=1e-4)
    config.task = "segmentation"
    keys = "keep('image', 'segmentation')"
    pp_train = f"{keys}|random_scale(0.8, 1.25)|random_crop(96, pad=8)|normalize"
    config.data = data(
        "digit_scenes", pp_train=pp_train, pp_eval=f"{keys}|normalize", batch_size=16, eval_batch_size=50
    )
    # boundary_width: mIoU in the 2 px band around the true boundaries too, where the FCNs' skips should show.
    config.segmentation = {"ignore_label": 255, "exclude_from_mean": (), "boundary_width": 2}
    if runlocal:
        config.data.update(train_split="train[:32]", validation_split="validation[:20]", test_split="test[:20]")
        config.update(total_steps=6, eval_every_steps=3, log_every_steps=3)
    return config


def detection_paper(task: str, dataset: str, *, lr: float, into: str, runlocal: bool = False) -> ConfigDict:
    """The detection papers' COCO / VOC training (Detectron's 1x schedule) that every recipe shares.

    ``dataset`` "coco": ``coco/2017``, shorter side 800 (longer at most 1333) padded to 1344, 90k steps of 16
    images, /10 at 60k and 80k; "voc": ``voc/2007``, 600 / 1000 px padded to 1024, 18k steps, /10 at 12k. SGD
    momentum 0.9 at ``lr``, L2 1e-4, 500 warm-up steps; flips; crowd and VOC-difficult boxes dropped for training
    and flagged for the metric. ``config.init_from`` is ready for an ImageNet run's weights under the submodule
    ``into``. ``runlocal``: 48 / 64 px images, 2 steps, 4 / 2 / 2 images (on ``tfds.testing.mock_data``).
    """
    if dataset not in ("coco", "voc"):
        raise ValueError(f"dataset must be 'coco' or 'voc', not {dataset!r}")
    coco = dataset == "coco"
    short, long, pad = (800, 1333, 1344) if coco else (600, 1000, 1024)
    steps, milestones = (90_000, (60_000, 80_000)) if coco else (18_000, (12_000,))
    if runlocal:  # small images, two steps: the whole flow on mock data
        short, long, pad, steps, milestones = 48, 64, 64, 2, (1,)
    resize = f"resize_short({short}, max_size={long})"
    tail = f"pad_boxes(100)|normalize|pad_to({pad})"  # normalize first: the padding is 0, the mean colour
    config = training(total_epochs=None, total_steps=steps, eval_every_epochs=None, eval_every_steps=steps)
    config.early_stopping.update(metric="ap", mode="max")
    config.task = task
    train_pp = f"decode_detection(crowd='drop', difficult='drop')|{resize}|flip_lr|{tail}"
    name, eval_pp = ("coco/2017" if coco else "voc/2007"), f"decode_detection|{resize}|{tail}"
    config.data = data(name, pp_train=train_pp, pp_eval=eval_pp, batch_size=16, eval_batch_size=8, worker_count=8)
    config.optim.update(name="momentum", momentum=0.9, lr=lr, schedule="step", weight_decay=0.0, l2=1e-4)
    config.optim.update(milestones_steps=milestones, warmup_steps=min(500, steps // 2))
    config.init_from = {"workdir": "", "step": None, "into": into}
    if runlocal:
        config.data.update(batch_size=2, eval_batch_size=2, worker_count=0)
        config.data.update(train_split="train[:4]", validation_split="validation[:2]", test_split="test[:2]")
    return config


def optim(name: str = "adam", lr: float = 3e-3, schedule: str = "cosine", **overrides: Any) -> ConfigDict:
    """Every key of mlcv.optim: optimizer, learning-rate schedule, regularizers, gradient clipping.

    Any optimizer, schedule or regularizer is then one override away; ``overrides`` set other keys.
    """
    config = ConfigDict()
    config.name = name  # sgd | momentum | nesterov | adagrad | rmsprop | adam | newton
    config.lr = lr
    config.momentum = 0.9  # momentum, nesterov
    config.b1 = 0.9  # adam
    config.b2 = 0.999
    config.eps = 1e-8  # adam, adagrad, rmsprop
    config.decay = 0.9  # rmsprop
    config.initial_accumulator = 0.0  # adagrad
    config.newton_damping = 0.1  # newton: (H + damping I)^-1 g, small models only
    config.schedule = schedule  # constant | step | cosine | linear | onecycle | cosine_restarts
    config.warmup_steps = 0
    config.end_lr_factor = 0.0  # cosine, linear, cosine_restarts: final lr / lr
    config.milestones_steps = ()  # step
    config.milestones_epochs = ()
    config.step_factor = 10.0
    config.onecycle_pct = 0.3  # onecycle: fraction of steps rising
    config.div_factor = 25.0
    config.final_div = 1e4
    config.onecycle_anneal = "linear"  # onecycle: linear | cos fall after the peak (linear: the course's eqs. 38-39)
    config.momentum_max = 0.95  # onecycle: momentum (or adam b1) moves the opposite way
    config.momentum_min = 0.85
    config.cycles = 1  # cosine_restarts
    config.plateau_factor = 0.0  # > 0: multiply the lr by it when validation loss plateaus
    config.plateau_patience_evals = 2
    config.plateau_min_delta = 0.0
    config.weight_decay = 0.0  # decoupled: theta -= lr * wd * theta
    config.l2 = 0.0  # coupled, as a loss term (l2 / 2) * |theta|^2
    config.l1 = 0.0
    config.decay_mask = "kernels"  # kernels | all
    config.grad_clip_norm = 0.0
    config.update(overrides)
    return config


def training(
    *,
    seed: int = 0,
    total_epochs: float | None = 40.0,
    total_steps: int | None = None,
    eval_every_epochs: float | None = 2.0,
    eval_every_steps: int | None = None,
    log_every_steps: int = 20,
    metric: str = "accuracy",
    mode: str = "max",
) -> ConfigDict:
    """What the training loop reads of every trained model, whatever its task.

    ``seed``; ``dtype`` and ``split_train_step`` (how the step computes); ``averaging`` (EMA / Polyak
    parameters evaluated beside the raw ones); :func:`optim` (its defaults: Adam 3e-3, cosine);
    ``snapshot_ensemble``; durations in epochs or steps (``*_steps`` wins when both are set);
    ``early_stopping`` (model selection: the checkpoint with the best validation ``metric`` in ``mode``'s
    direction; a blank metric means the task's headline metric in its evaluator's direction);
    ``checkpoint``; ``tensorboard``.
    """
    config = ConfigDict()
    config.seed = seed
    # bfloat16 computes the forward and backward passes in bf16; parameters and optimizer state stay float32.
    config.dtype = "float32"
    # "auto" runs the train step as two executables (forward, backward) on CPU, where XLA gains from it, for
    # steps of 5 GFLOP or more (mlcv.training.steps.SPLIT_MIN_FLOPS).
    config.split_train_step = "auto"

    # Parameter averaging evaluated beside the raw parameters (mlcv.averaging).
    config.averaging = ConfigDict()
    config.averaging.kind = "none"  # none | ema | polyak | cycle
    config.averaging.ema_decay = 0.99
    config.averaging.ema_warmup = True
    config.averaging.start_step = 0  # polyak: first averaged step

    config.optim = optim()
    # With optim.schedule="cosine_restarts": evaluate the cycle-end snapshots as an ensemble.
    config.snapshot_ensemble = False

    config.total_epochs = total_epochs
    config.total_steps = _typed(total_steps, int)
    config.eval_every_epochs = eval_every_epochs
    config.eval_every_steps = _typed(eval_every_steps, int)
    config.log_every_steps = log_every_steps
    config.log_every_epochs = placeholder(float)

    config.early_stopping = ConfigDict()
    config.early_stopping.metric = metric
    config.early_stopping.mode = mode
    config.early_stopping.patience_evals = 0  # 0 never stops early
    config.early_stopping.min_delta = 0.0
    config.early_stopping.use_average = False  # select on the averaged parameters' metric

    config.checkpoint = ConfigDict()
    config.checkpoint.keep = 2
    # Checkpoints are written at every evaluation; these add saves in between.
    config.checkpoint.every_steps = placeholder(int)
    config.checkpoint.every_epochs = placeholder(float)
    config.tensorboard = True
    return config


def classification(
    data: ConfigDict,
    model: Mapping[str, Any],
    *,
    loss: str = "softmax_xent",
    label_smoothing: float = 0.0,
    **training_kwargs: Any,
) -> ConfigDict:
    """A trained classifier: task, ``loss``, ``data`` (:func:`data`), ``model``, distillation, :func:`training`.

    ``model`` is the model block (``{"name": "cnn", ...}``: mlcv.models' registry name and its keyword
    arguments); ``training_kwargs`` go to :func:`training`. Model selection is on validation accuracy.
    The ``distill`` block is read with ``task="distillation"``: teachers are finished runs' workdirs.
    """
    head = ConfigDict()
    head.task = "classification"
    head.loss = loss
    head.data = data
    head.model = ConfigDict(model)
    head.label_smoothing = label_smoothing
    # Knowledge distillation (config.task = "distillation"): teachers are finished runs.
    head.distill = ConfigDict()
    head.distill.teacher_workdirs = ()
    head.distill.temperature = 4.0
    head.distill.alpha = 0.9
    train = training(**training_kwargs)
    return _join(ConfigDict({"seed": train.seed}), head, train)


def fitted(task: str, data_name: str | None = None, *, seed: int = 0) -> ConfigDict:
    """A fitted method (mlcv.classic): ``task``, ``seed``, no TensorBoard, and :func:`dataset` if named.

    The method's own blocks (``knn``, ``bovw``, ``cascade``...) stay in its experiment file.
    """
    config = ConfigDict({"task": task, "seed": seed, "tensorboard": False})
    if data_name is not None:
        config.data = dataset(data_name)
    return config


def metric_learning(
    data: ConfigDict,
    model: Mapping[str, Any],
    *,
    loss: str = "triplet",
    dim: int = 64,
    identities_per_batch: int = 0,
    images_per_identity: int = 0,
    **training_kwargs: Any,
) -> ConfigDict:
    """An embedding network (``task="metric_learning"``): ``data``, the backbone ``model``, the embedding and the loss.

    ``embedding``: ``dim``, ``normalize`` (L2), ``relu`` (DeepFace's rectified representation), ``train_classes``
    (the identities a softmax or ArcFace head classifies; 0 = the dataset's class count). ``loss``: ``name``
    (softmax | contrastive | triplet | arcface), ``margin`` (contrastive, triplet; contrastive 0 = the unbounded
    form), ``squared`` distances, ``mining`` (semi_hard | batch_all | batch_hard | random), ArcFace's ``scale``
    and ``arcface_margin`` (radians). ``identities_per_batch`` x ``images_per_identity`` > 0 makes P x K batches.
    Model selection is on validation Recall@1.
    """
    data.identities_per_batch = identities_per_batch
    data.images_per_identity = images_per_identity
    head = ConfigDict({"task": "metric_learning", "data": data, "model": ConfigDict(model)})
    head.embedding = ConfigDict({"dim": dim, "normalize": True, "relu": False, "train_classes": 0})
    head.loss = ConfigDict(
        {"name": loss, "margin": 0.2, "squared": False, "mining": "semi_hard", "scale": 16.0, "arcface_margin": 0.5}
    )
    train = training(**{"metric": "recall_at_1", **training_kwargs})
    return _join(ConfigDict({"seed": train.seed}), head, train)


def stereo(task: str, data: ConfigDict, model: Mapping[str, Any], **training_kwargs: Any) -> ConfigDict:
    """A dense two-view or one-view predictor: ``task`` (disparity | flow | monodepth | mccnn), ``data``, ``model``.

    ``stereo``: ``scale_weights`` of the multi-scale losses (empty: 1 for every scale the model predicts), the
    calibration (``focal_px``, ``baseline``) for the evaluator's depth maps. ``monodepth``: the weights of eq. 78
    (``alpha_ap``, ``alpha_ds``, ``alpha_lr``) and the SSIM share of eq. 75 (``alpha_ssim``). ``mccnn``: the
    disparities scored, the hinge margin, the negatives' offsets and the classic pipeline's settings
    (``lr_threshold`` < 0: no left-right check). Model selection is on the task's headline metric (validation bad-2
    or flow EPE).
    """
    head = ConfigDict({"task": task, "data": data, "model": ConfigDict(model)})
    head.stereo = ConfigDict({"scale_weights": (), "focal_px": 0.0, "baseline": 0.0})
    head.monodepth = ConfigDict({"alpha_ap": 1.0, "alpha_ds": 0.1, "alpha_lr": 1.0, "alpha_ssim": 0.85})
    # MC-CNN: disparities 0..max_disparity scored; negatives neg_low..neg_high px off the truth; the classic pipeline.
    head.mccnn = ConfigDict(
        {"max_disparity": 31, "margin": 0.2, "neg_low": 2, "neg_high": 8, "lr_threshold": 1.0, "subpixel": True}
    )
    head.mccnn.fill = True
    head.mccnn.aggregate_radius = 0  # box mean of the scores before the WTA (0: none)
    head.mccnn.sgm_p1, head.mccnn.sgm_p2 = 0.0, 0.0  # semi-global matching's penalties (P1 = 0: none)
    train = training(**{"metric": "", "mode": "", **training_kwargs})
    return _join(ConfigDict({"seed": train.seed}), head, train)

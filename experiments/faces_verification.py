"""Face verification on the real faces of scikit-image's lfw_subset (course §11.6), offline.

Run:
  python launch.py --config experiments/faces_verification.py --workdir runs/faces_verification
  python launch.py --config experiments/faces_verification.py:loss=arcface --workdir runs/faces_arcface
  python launch.py --config experiments/faces_verification.py:runlocal   # a few steps

``face_instances`` (mlcv.data): each of the 100 faces is its own identity: an identity is an INSTANCE here, not a
person (lfw_subset does not say who is who). Every face comes as 8 augmented views; faces 0-39 train, 40-49
validate, 50-99 test, so the test pairs (views of the same face, views of two different faces) are made of
faces never seen in training. A small CNN (16-32-64 channels, a 64-d projection, L2 normalisation) trained for
1500 steps of 8 faces x 8 views; the verification threshold is chosen on the validation pairs.

Reaches (test, 50 unseen faces, 1,400 positive and 1,400 negative pairs, seeds 0-2, mean ± sample std): triplets
Recall@1 94.75 ± 2.38 %, verification accuracy 93.88 ± 2.58, AUC 98.66 ± 0.88, TAR at FAR 1e-2 74.19 ± 14.81;
ArcFace 95.67 ± 1.23, 92.56 ± 2.63, 98.31 ± 0.65, 70.93 ± 10.57. 105-208 s a run on the 2-core CPU beside the test
suite. Per seed: docs/results.md#faces_verification.
"""

from __future__ import annotations

import ml_collections

from mlcv import defaults
from mlcv.config import parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Args ``loss`` (triplet with semi-hard negatives, contrastive, arcface, softmax), ``runlocal``."""
    args = parse_arg(arg, loss="triplet", runlocal=False)
    data = defaults.data("face_instances", pp_train="flip_lr|random_crop(25, pad=2)|normalize", batch_size=64)
    model = {"name": "cnn", "features": (16, 32, 64), "convs_per_stage": 2, "dense": 128, "dropout": 0.0}
    config = defaults.metric_learning(data, model, loss=args.loss, identities_per_batch=8, images_per_identity=8)
    config.embedding.train_classes = 40  # faces 0-39
    config.optim.update(name="adam", lr=1e-3, schedule="cosine", weight_decay=1e-4)
    config.update(total_epochs=None, total_steps=1500, eval_every_epochs=None, eval_every_steps=250)
    config.update(log_every_steps=50, tensorboard=False)
    if args.runlocal:
        config.model.update(features=(8, 16), dense=32)
        config.update(total_steps=6, eval_every_steps=3, log_every_steps=3)
    return config

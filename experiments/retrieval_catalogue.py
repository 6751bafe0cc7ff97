"""Open-set retrieval on the field's benchmarks: CUB-200-2011, Cars196 (Recall@K) and LFW (verification).

Run (needs the TFDS datasets, downloaded on first use, and an accelerator; not yet measured: neither is here):
  python launch.py --config experiments/retrieval_catalogue.py:dataset=cub --workdir runs/cub_triplet
  python launch.py --config experiments/retrieval_catalogue.py:dataset=cars,loss=arcface
  python launch.py --config experiments/retrieval_catalogue.py:dataset=cub,runlocal   # tiny model, 2 steps

Class splits (mlcv.data): CUB classes 1-100 train / 101-200 test, Cars196 1-98 / 99-196; LFW (no standard open-set
split) the first half of the sorted names / the second. ResNet-50, a 512-d projection, P x K = 32 x 4, crops of
224 + flips, Adam 1e-4 (cosine, weight decay 1e-4), 60 epochs, the checkpoint chosen on validation Recall@1 (10 % of
the training classes' images); ``config.init_from`` takes an ImageNet ResNet-50 run, as the published figures do.

Published targets (test Recall@1, %): CUB: semi-hard triplets 42.6 and lifted structure 47.2 (Oh Song et al.
2016, GoogLeNet, 64-d), multi-similarity 65.7 (Wang et al. 2019, BN-Inception, 512-d); Cars196: 51.5, 49.0, 84.1.
LFW's published verification accuracies (DeepFace 97.35, FaceNet 99.63, ArcFace 99.83) use the official 6,000
pairs of unrestricted identities, which TFDS's lfw does not carry: not comparable with this split's pairs.
"""

from __future__ import annotations

import ml_collections

from mlcv import defaults
from mlcv.config import parse_arg

DATASETS = {"cub": "caltech_birds2011", "cars": "cars196", "lfw": "lfw"}
TRAIN_CLASSES = {"cub": 100, "cars": 98, "lfw": 2875}  # the identities a softmax or ArcFace head classifies


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Args ``dataset`` (cub, cars, lfw), ``loss`` (triplet, contrastive, arcface, softmax), ``runlocal``."""
    args = parse_arg(arg, dataset="cub", loss="triplet", runlocal=False)
    if args.dataset not in DATASETS:
        raise ValueError(f"dataset={args.dataset!r}: expected one of {', '.join(DATASETS)}")
    size = 32 if args.runlocal else 224
    keep = "keep('image', 'label')"
    data = defaults.data(
        DATASETS[args.dataset],
        pp_train=f"{keep}|random_resized_crop({size})|flip_lr|normalize",
        pp_eval=f"{keep}|resize_short({size * 8 // 7})|center_crop({size})|normalize",
        batch_size=128,
        eval_batch_size=256,
        worker_count=8,
    )
    config = defaults.metric_learning(
        data, {"name": "resnet50"}, loss=args.loss, dim=512, identities_per_batch=32, images_per_identity=4
    )
    config.optim.update(name="adam", lr=1e-4, schedule="cosine", weight_decay=1e-4)
    config.update(total_epochs=60.0, eval_every_epochs=5.0, log_every_steps=50)
    config.embedding.train_classes = TRAIN_CLASSES[args.dataset]
    config.loss.scale = 64.0  # ArcFace's published scale for 512-d embeddings
    config.init_from = {"workdir": "", "step": None, "into": "backbone"}
    if args.runlocal:  # the whole flow on tfds.testing.mock_data
        config.model.name, config.embedding.dim = "_resnet_tiny", 16
        config.data.update(batch_size=8, eval_batch_size=8, worker_count=0)
        config.data.update(identities_per_batch=2, images_per_identity=2)
        config.update(total_epochs=None, total_steps=2, eval_every_epochs=None, eval_every_steps=2)
    if args.dataset == "lfw":  # most people of LFW have one image: P x K batches draw from those with K or more
        config.data.train_split = f"train|classes=:50%|images=:90%|min_images={config.data.images_per_identity}"
    return config

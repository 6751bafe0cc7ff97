"""Open-set retrieval on the field's benchmarks: CUB-200-2011, Cars196 (Recall@K) and LFW (verification).

Run (needs the TFDS datasets, downloaded on first use, and an accelerator; none is measured on this CPU):
  python launch.py --config experiments/retrieval_catalogue.py:dataset=cub --workdir runs/cub_triplet
  python launch.py --config experiments/retrieval_catalogue.py:dataset=cars,loss=arcface
  python launch.py --config experiments/retrieval_catalogue.py:dataset=cub,runlocal   # tiny, on mock data

Standard class splits (mlcv.data): CUB classes 1-100 train / 101-200 test, Cars196 1-98 / 99-196, all images of
each; LFW (no standard open-set split) the first half of the names in sorted order train, the second half test.
Recipe: ResNet-50 with a 512-d projection, P x K = 32 x 4, random-resized crop 224 + flip, Adam 1e-4 (cosine)
with weight decay 1e-4, 60 epochs, the checkpoint chosen on validation Recall@1 (10 % of the training classes'
images). ``config.init_from`` takes an ImageNet ResNet-50 run; the published figures all start from ImageNet.

Published targets (test Recall@1, %): CUB: semi-hard triplets 42.6 and lifted structure 47.2 (Oh Song et al.
2016, GoogLeNet, 64-d), multi-similarity 65.7 (Wang et al. 2019, BN-Inception, 512-d); Cars196: 51.5, 49.0, 84.1.
LFW's published verification accuracies (DeepFace 97.35, FaceNet 99.63, ArcFace 99.83) use the official 6,000
pairs of unrestricted identities, which TFDS's lfw does not carry: not comparable with this split's pairs.
Not yet measured: no download, no accelerator here.
"""

from __future__ import annotations

import ml_collections

from mlcv import defaults
from mlcv.config import parse_arg

DATASETS = {"cub": "caltech_birds2011", "cars": "cars196", "lfw": "lfw"}


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
    config.loss.scale = 64.0  # ArcFace's published scale for 512-d embeddings
    config.init_from = {"workdir": "", "step": None, "into": "backbone"}
    if args.runlocal:  # the whole flow on tfds.testing.mock_data
        config.model.name = "_resnet_tiny"
        config.embedding.dim = 16
        config.data.update(batch_size=8, eval_batch_size=8, worker_count=0, identities_per_batch=2)
        config.data.images_per_identity = 2
        config.update(total_epochs=None, total_steps=2, eval_every_epochs=None, eval_every_steps=2)
    return config

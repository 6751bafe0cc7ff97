"""RetinaNet ResNet-50-FPN (Lin et al. 2017, "Focal Loss for Dense Object Detection") on COCO 2017 or VOC 2007.

Run (needs the TFDS datasets prepared and accelerators: 90k steps of 16 images at 800 px on COCO):
  python launch.py --config experiments/retinanet_r50_fpn.py --workdir runs/retinanet_r50_fpn_coco
  python launch.py --config experiments/retinanet_r50_fpn.py:dataset=voc --workdir runs/retinanet_r50_fpn_voc
  python launch.py --config experiments/retinanet_r50_fpn.py:runlocal   # a few steps on small images (mock data)
ImageNet weights, as the paper: --config.init_from.workdir=runs/imagenet_resnet50 (init_from.into = backbone).

Recipe (the paper and Detectron's 1x schedule): ResNet-50, FPN P3-P7 of 256 channels (P6, P7 strided convs
above C5), subnets of four 3x3 convs; anchors 32-512 px x 2^(0, 1/3, 2/3) x ratios 0.5, 1, 2; IoU >= 0.5
foreground, < 0.4 background; focal loss gamma 2, alpha 0.25; smooth L1 beta 0.11; SGD momentum 0.9, lr 0.01 at
batch 16, weight decay 1e-4, 500 warm-up steps, /10 at 60k and 80k of 90k; shorter side 800 (longer at most
1333), horizontal flips; crowd boxes dropped for training and ignored by the metric. VOC 2007: shorter side
600 (at most 1000), 18k steps, /10 at 12k (Faster R-CNN's VOC scale).
Departures: batch-norm statistics train (Detectron freezes them at 2 images a GPU); images padded to a fixed
1344 (VOC 1024) square so one compiled step serves every batch; top-1000 boxes over all levels before NMS.
Targets (published): COCO val2017 AP 35.7, AP50 55.0, AP75 38.5 (the paper's Table 1e, ResNet-50 at 800 px).
VOC 2007: no published RetinaNet figure for VOC 2007 trainval alone. mlcv's AP50 is COCO's 101-point
interpolation, a little above VOC's 11-point mAP. Not measured here: no COCO or VOC and no accelerator.
"""

from __future__ import annotations

import ml_collections

from mlcv import defaults
from mlcv.config import parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The recipe; args ``dataset`` (coco or voc) and ``runlocal``."""
    args = parse_arg(arg, dataset="coco", runlocal=False)
    config = defaults.detection_paper("retinanet", args.dataset, lr=0.01, into="backbone", runlocal=args.runlocal)
    config.model = {"name": "retinanet", "backbone": "resnet50", "max_level": 7, "fpn_features": 256, "head_convs": 4}
    config.detection = {"anchor_sizes": (32.0, 64.0, 128.0, 256.0, 512.0), "aspect_ratios": (0.5, 1.0, 2.0)}
    config.detection.update(anchor_scales=(1.0, 2 ** (1 / 3), 2 ** (2 / 3)), positive_iou=0.5, negative_iou=0.4)
    config.detection.update(focal_gamma=2.0, focal_alpha=0.25, box_beta=0.11, nms_threshold=0.5, max_detections=100)
    if args.runlocal:
        config.model.update(backbone="_resnet_tiny", fpn_features=8, head_convs=1)
    return config

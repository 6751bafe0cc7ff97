"""Faster R-CNN ResNet-50-FPN (Ren et al. 2015; Lin et al. 2017, "Feature Pyramid Networks") on COCO 2017 or VOC 2007.

Run (needs the TFDS datasets prepared and accelerators: 90k steps of 16 images at 800 px on COCO):
  python launch.py --config experiments/faster_rcnn_r50_fpn.py --workdir runs/faster_rcnn_r50_fpn_coco
  python launch.py --config experiments/faster_rcnn_r50_fpn.py:dataset=voc --workdir runs/faster_rcnn_r50_fpn_voc
  python launch.py --config experiments/faster_rcnn_r50_fpn.py:runlocal   # a few steps on small images (mock data)

Recipe (FPN §4, Detectron's 1x): ResNet-50 (ImageNet weights: init_from.workdir = a ResNet-50 run), FPN P2-P6 of
256 channels (P6 subsamples P5, for the RPN only); an anchor size a level (32-512 px) x ratios 0.5, 1, 2; RPN: IoU
0.7 / 0.3, 256 anchors an image half positive, NMS 0.7 keeping 2000 proposals (training) or 1000 (test); RoIAlign
7x7 from the level of FPN's eq. 1 (224 px at P4), P2-P5; a 2fc head of 1024; 512 RoIs an image, 25 % foreground
at IoU 0.5; box weights 10, 10, 5, 5; SGD momentum 0.9, lr 0.02 at batch 16, weight decay 1e-4, 500 warm-up
steps, /10 at 60k and 80k of 90k; 800 / 1333 px, flips, crowd boxes dropped for training. VOC: 600 / 1000 px, 18k.
Departures (static shapes): fixed padded squares; RoIs pooled from every level, the assigned one kept; top proposals
over all levels (Detectron: per level); batch norm trains (Detectron freezes it).
Targets (published): COCO minival AP 33.9, AP50 56.9 (FPN paper, Table 3 (c)); VOC 2007 test 69.9 % mAP for the
VGG-16 Faster R-CNN on VOC 2007 trainval (Ren et al. 2015). Not measured here: no COCO, VOC or accelerator.
"""

from __future__ import annotations

import ml_collections

from mlcv import defaults
from mlcv.config import parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The recipe; args ``dataset`` (coco or voc) and ``runlocal``."""
    args = parse_arg(arg, dataset="coco", runlocal=False)
    config = defaults.detection_paper(
        "faster_rcnn", args.dataset, lr=0.02, into="features/resnet", runlocal=args.runlocal
    )
    config.model = {"name": "faster_rcnn", "backbone": "resnet50", "min_level": 2, "max_level": 6, "roi_max_level": 5}
    config.model.update(fpn_features=256, head_features=1024, canonical_size=224.0, canonical_level=4)
    config.detection = {"anchor_sizes": (32.0, 64.0, 128.0, 256.0, 512.0), "aspect_ratios": (0.5, 1.0, 2.0)}
    config.detection.update(pre_nms_top_k_train=2000, post_nms_top_k_train=2000, pre_nms_top_k_test=1000)
    config.detection.update(post_nms_top_k_test=1000, roi_batch_size=512, roi_positive_fraction=0.25)
    if args.runlocal:
        config.model.update(backbone="_resnet_tiny", fpn_features=8, head_features=16)
        config.detection.update(post_nms_top_k_train=64, post_nms_top_k_test=32, roi_batch_size=16)
    return config

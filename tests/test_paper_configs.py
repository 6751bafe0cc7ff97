"""The paper recipes' values, and their runlocal runs end to end on tfds.testing.mock_data, no download.

The runlocal runs compile ResNet-20 / ResNet-50 backbones (1-4 min each on 2 cores) and are marked slow; CI
checks the recipes' values and the digit-scene detectors run the same loop with small models.
"""

from __future__ import annotations

import pytest
import tensorflow_datasets as tfds

from experiments import cifar_resnet, imagenet_resnet50
from mlcv.training import loop as train


@pytest.mark.parametrize("depth", cifar_resnet.DEPTHS)
def test_cifar_recipe_values(depth):
    """He et al. 2016: batch 128, momentum 0.9, lr 0.1, /10 at 32k and 48k of 64k steps, L2 1e-4, option A."""
    config = cifar_resnet.get_config(f"depth={depth}")
    assert (config.data.batch_size, config.optim.lr, config.optim.momentum) == (128, 0.1, 0.9)
    assert tuple(config.optim.milestones_steps) == (32_000, 48_000) and config.total_steps == 64_000
    assert config.optim.l2 == 1e-4 and config.model.shortcut == "A" and config.model.name == f"resnet{depth}"
    assert config.optim.warmup_steps == (400 if depth == 110 else 0)


@pytest.mark.slow
def test_cifar_resnet_runlocal(tmp_path):
    """ResNet-20 trains a few steps on mock CIFAR-10 through the whole loop."""
    with tfds.testing.mock_data(num_examples=32):
        summary = train.run(cifar_resnet.get_config("depth=20,runlocal"), tmp_path / "cifar")
    assert summary["step"] == 4


def test_imagenet_recipe_values():
    config = imagenet_resnet50.get_config("runlocal")
    assert config.label_smoothing == 0.1 and config.optim.lr == 0.4 and config.model.zero_init_residual


@pytest.mark.slow
def test_imagenet_resnet50_runlocal(tmp_path):
    """ResNet-50 with the ImageNet recipe runs a few steps on mock ImageNet at 32x32."""
    config = imagenet_resnet50.get_config("runlocal")
    with tfds.testing.mock_data(num_examples=8):
        summary = train.run(config, tmp_path / "imagenet")
    assert summary["step"] == 2


@pytest.mark.parametrize("dataset", ["coco", "voc"])
def test_retinanet_r50_fpn_recipe_values(dataset):
    """Lin et al. 2017 with Detectron's 1x schedule: lr 0.01 for 16 images, gamma 2, P3-P7, 4-conv heads."""
    from experiments import retinanet_r50_fpn

    config = retinanet_r50_fpn.get_config(f"dataset={dataset}")
    assert (config.optim.lr, config.data.batch_size, config.detection.focal_gamma) == (0.01, 16, 2.0)
    assert config.model.max_level == 7 and config.model.backbone == "resnet50" and config.model.head_convs == 4
    if dataset == "coco":
        assert config.total_steps == 90_000 and tuple(config.optim.milestones_steps) == (60_000, 80_000)
        assert "resize_short(800, max_size=1333)" in config.data.pp_eval


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["coco", "voc"])
def test_retinanet_r50_fpn_runlocal(dataset, tmp_path, monkeypatch):
    """RetinaNet R50-FPN's recipe (Lin et al. 2017, Detectron 1x) runs a few steps on mock COCO / VOC."""
    from data.test_detection_catalogue import Consistent

    from experiments import retinanet_r50_fpn
    from mlcv import data

    # mock_data draws each object field apart; real records (and Consistent) align them.
    source = data.source
    monkeypatch.setattr(data, "source", lambda *a, **k: Consistent(source(*a, **k)))
    with tfds.testing.mock_data(num_examples=8):
        summary = train.run(retinanet_r50_fpn.get_config(f"dataset={dataset},runlocal"), tmp_path / dataset)
    assert summary["step"] == 2 and 0.0 <= summary["test"]["ap"] <= 1.0


def test_faster_rcnn_r50_fpn_recipe_values():
    """The FPN paper's Faster R-CNN: lr 0.02 for 16 images, 512 RoIs an image, P2-P6, RoIs on P2-P5 by 224 px."""
    from experiments import faster_rcnn_r50_fpn

    config = faster_rcnn_r50_fpn.get_config("dataset=coco")
    assert (config.optim.lr, config.data.batch_size, config.detection.roi_batch_size) == (0.02, 16, 512)
    assert (config.model.min_level, config.model.max_level, config.model.roi_max_level) == (2, 6, 5)
    assert config.model.canonical_size == 224.0 and config.detection.post_nms_top_k_test == 1000


@pytest.mark.slow
def test_faster_rcnn_r50_fpn_runlocal(tmp_path, monkeypatch):
    """Faster R-CNN R50-FPN's recipe (FPN paper, Detectron 1x) runs a few steps on mock COCO."""
    from data.test_detection_catalogue import Consistent

    from experiments import faster_rcnn_r50_fpn
    from mlcv import data

    source = data.source
    monkeypatch.setattr(data, "source", lambda *a, **k: Consistent(source(*a, **k)))
    with tfds.testing.mock_data(num_examples=8):
        summary = train.run(faster_rcnn_r50_fpn.get_config("dataset=coco,runlocal"), tmp_path / "coco")
    assert summary["step"] == 2 and 0.0 <= summary["test"]["ap"] <= 1.0

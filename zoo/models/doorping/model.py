"""The networks of DOORPING's distillation code: ConvNet (no normalisation, 192-unit penultimate layer), the standard
DC ConvNet (instance norm, linear head) and AlexNet-CIFAR ("AlexCifarNet"); and the two networks of the authors'
cross-architecture evaluation pool (``get_eval_pool`` with ``eval_mode='M'`` in their ``DC/utils.py``): VGG11 and
ResNet18 as the Dataset Condensation code's ``get_network('VGG11' | 'ResNet18', ...)`` builds them (instance norm).

Module names and indices follow the authors' layout (``features.N``, ``classifier.N``; ResNet18's ``conv1``,
``layerK.B.*``, ``classifier.N``), so their saved evaluation networks load without renaming
(`zoo.models.doorping.convert` reads all of them). Every network exposes

* ``forward(x: [B, C, H, W]) -> logits [B, num_classes]``;
* ``embed(x) -> [B, D]``: the flattened features before the classifier (what distribution matching compares);
* ``penultimate``: the dotted name of the layer whose units DOORPING selects from (its weight's rows are the units'
  incoming weights); a name, not a second reference, so ``state_dict`` and ``torch.func`` see each layer once;
* ``get_classifier()``: the last Linear layer; ``input_spec``: input size, mean and std of its dataset.

1-channel inputs use padding 3 in the first convolution, as in the authors' ConvNet: at the 32 px they train
Fashion-MNIST and MNIST at (resized, `zoo.models.doorping.real_images`) the first map is 36 x 36 and the features are
still 128 x 4 x 4 = 2048 (as for 28 px input). VGG11 does the same (its map is 1 x 1 x 512 either way); ResNet18
pads its first convolution by 1 whatever the channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ZooError
from ..sizes import check_ints, check_mean_std


def _spec(channels: int, image_size: int, mean, std) -> dict:
    """``input_spec`` of a [channels, image_size, image_size] input; mean / std None: 0.5 for every channel.
    ``fixed_size``: the classifier's input width is sized for this side, so no other side works."""
    check_mean_std(mean, std, channels)
    mean = (0.5,) * channels if mean is None else mean
    std = (0.5,) * channels if std is None else std
    return {"input_size": [channels, image_size, image_size], "mean": [float(m) for m in mean],
            "std": [float(s) for s in std], "interpolation": "bilinear", "crop_pct": 1.0, "fixed_size": True}


class _Network(nn.Module):
    """What every DOORPING network shares: logits = ``classifier(embed(x))``, and `get_classifier`, the last Linear
    (the whole ``classifier`` when it is one Linear)."""

    def get_classifier(self) -> nn.Linear:
        return self.classifier[-1] if isinstance(self.classifier, nn.Sequential) else self.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> logits [B, num_classes]."""
        return self.classifier(self.embed(x))


class ConvNet(_Network):
    """``depth`` x [conv3x3(width) -> norm -> ReLU -> AvgPool2], then the classifier.

    Args:
        channels, num_classes, image_size: input channels, classes, input side in pixels.
        width, depth: conv channels and number of conv blocks (paper code: 128, 3).
        norm: ``"none"`` (DOORPING's ConvNet) or ``"instancenorm"`` (the standard DC ConvNet; GroupNorm with one
            group per channel, as the DC code).
        hidden: units of the penultimate Linear layer (DOORPING: 192); 0 gives the DC linear head.
        mean, std: dataset normalisation recorded in ``input_spec``, one value per channel (None: 0.5 each).

    Shapes: [B, channels, image_size, image_size] -> [B, num_classes]; ``embed`` -> [B, width * s * s] with
    s = (image_size + 2 * pad - 2) // 2**depth (pad 3 for 1-channel input, else 1).
    """

    def __init__(self, channels: int = 3, num_classes: int = 10, image_size: int = 32, width: int = 128,
                 depth: int = 3, norm: str = "none", hidden: int = 192, mean=None, std=None):
        super().__init__()
        check_ints(channels=channels, num_classes=num_classes, image_size=image_size, width=width, depth=depth)
        check_ints(0, hidden=hidden)
        if norm not in ("none", "instancenorm"):
            raise ZooError(f"ConvNet norm must be 'none' or 'instancenorm', got {norm!r}")
        layers, c, side = [], channels, image_size
        for d in range(depth):
            pad = 3 if channels == 1 and d == 0 else 1
            layers.append(nn.Conv2d(c, width, 3, padding=pad))
            side = side + 2 * pad - 2
            if norm == "instancenorm":
                layers.append(_norm2d(norm, width))
            layers += [nn.ReLU(inplace=True), nn.AvgPool2d(2, 2)]
            c, side = width, side // 2
        if side < 1:
            raise ZooError(f"image_size {image_size} is too small for a depth-{depth} ConvNet")
        self.features = nn.Sequential(*layers)
        self.num_features = width * side * side
        if hidden:
            self.classifier = nn.Sequential(nn.Linear(self.num_features, hidden), nn.ReLU(inplace=True),
                                            nn.Linear(hidden, num_classes))
            self.penultimate = "classifier.0"
        else:
            self.classifier = nn.Linear(self.num_features, num_classes)
            self.penultimate = f"features.{len(layers) - (4 if norm == 'instancenorm' else 3)}"  # the last conv
        self.input_spec = _spec(channels, image_size, mean, std)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> flattened features [B, num_features]."""
        return self.features(x).flatten(1)


class AlexNetCifar(_Network):
    """AlexNet for 32 px images (the authors' ``AlexNet``): conv5x5(64) -> ReLU -> MaxPool3/2 -> LRN ->
    conv5x5(64) -> ReLU -> LRN -> MaxPool3/2 -> FC 384 -> FC 192 -> FC num_classes.

    Shapes: [B, C, S, S] -> [B, num_classes]; ``embed`` -> [B, 64 * s * s], s = ceil(ceil(S / 2) / 2) (4096 for
    S = 32; the authors' code hard-codes 4096, so it only runs at 32 px).
    """

    def __init__(self, channels: int = 3, num_classes: int = 10, image_size: int = 32, mean=None, std=None):
        super().__init__()
        check_ints(channels=channels, num_classes=num_classes, image_size=image_size)
        self.features = nn.Sequential(
            nn.Conv2d(channels, 64, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, padding=1),
            nn.LocalResponseNorm(4, alpha=0.001 / 9.0, beta=0.75, k=1),
            nn.Conv2d(64, 64, 5, padding=2), nn.ReLU(inplace=True),
            nn.LocalResponseNorm(4, alpha=0.001 / 9.0, beta=0.75, k=1), nn.MaxPool2d(3, 2, padding=1),
        )
        side = (((image_size - 1) // 2 + 1) - 1) // 2 + 1
        self.num_features = 64 * side * side
        self.classifier = nn.Sequential(nn.Linear(self.num_features, 384), nn.ReLU(inplace=True),
                                        nn.Linear(384, 192), nn.ReLU(inplace=True), nn.Linear(192, num_classes))
        self.penultimate = "classifier.2"
        self.input_spec = _spec(channels, image_size, mean, std)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> flattened features [B, num_features]."""
        return self.features(x).flatten(1)


def _norm2d(norm: str, width: int) -> nn.Module:
    """The DC code's normalisation of a [B, width, H, W] map: ``instancenorm`` is GroupNorm with one group per
    channel (affine), ``batchnorm`` BatchNorm2d (its ``...BN`` networks)."""
    return nn.GroupNorm(width, width, affine=True) if norm == "instancenorm" else nn.BatchNorm2d(width)


def _check_norm(norm: str, network: str) -> None:
    if norm not in ("instancenorm", "batchnorm"):
        raise ZooError(f"{network} norm must be 'instancenorm' (the evaluation pool's) or 'batchnorm', got {norm!r}")


VGG11_LAYOUT = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")  # conv widths, "M": max-pool 2


class VGG11(_Network):
    """VGG11 of the DC code (``get_network('VGG11', ...)``): per entry of `VGG11_LAYOUT` either [conv3x3 (with bias)
    -> norm -> ReLU] or MaxPool2/2, then AvgPool 1x1 (an identity the authors keep) and one Linear.

    Module indices are the authors': ``features.0`` conv, ``.1`` norm, ``.2`` ReLU, ``.3`` pool, ... ``.25`` the last
    conv, ``.26`` its norm, ``.28`` the last max-pool, ``.29`` the 1x1 average pool; ``classifier`` is the Linear.

    Args:
        channels, num_classes, image_size: input channels, classes, input side in pixels.
        norm: ``"instancenorm"`` (``VGG11``, the evaluation pool's; GroupNorm(C, C)) or ``"batchnorm"`` (``VGG11BN``).
        mean, std: dataset normalisation recorded in ``input_spec``, one value per channel (None: 0.5 each).

    Shapes: [B, channels, S, S] -> [B, num_classes]; ``embed`` -> [B, 512 * s * s] where s is S (S + 4 for
    1-channel input: padding 3 in the first conv, as in the ConvNet) halved five times, rounding down. At 32 px
    (and 28 px 1-channel) s = 1: 512 features, the width the authors' classifier hard-codes.
    """

    def __init__(self, channels: int = 3, num_classes: int = 10, image_size: int = 32, norm: str = "instancenorm",
                 mean=None, std=None):
        super().__init__()
        check_ints(channels=channels, num_classes=num_classes, image_size=image_size)
        _check_norm(norm, "VGG11")
        layers, c, side = [], channels, image_size
        for i, entry in enumerate(VGG11_LAYOUT):
            if entry == "M":
                layers.append(nn.MaxPool2d(2, 2))
                side //= 2
                continue
            pad = 3 if channels == 1 and i == 0 else 1
            layers += [nn.Conv2d(c, entry, 3, padding=pad), _norm2d(norm, entry), nn.ReLU(inplace=True)]
            c, side = entry, side + 2 * pad - 2
        layers.append(nn.AvgPool2d(1, 1))
        if side < 1:
            raise ZooError(f"image_size {image_size} is too small for VGG11 (five 2x2 max-pools): use 32")
        self.features = nn.Sequential(*layers)
        self.num_features = c * side * side
        self.classifier = nn.Linear(self.num_features, num_classes)
        self.penultimate = f"features.{len(layers) - 5}"  # the last conv (as for the DC ConvNet): before norm, ReLU,
        # max-pool and the 1x1 average pool
        self.input_spec = _spec(channels, image_size, mean, std)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> flattened features [B, num_features]."""
        return self.features(x).flatten(1)


class BasicBlock(nn.Module):
    """ResNet basic block of the DC code: conv3x3(stride) -> norm -> ReLU -> conv3x3 -> norm, plus the shortcut
    (identity, or conv1x1(stride) -> norm where the stride or the width changes), then ReLU. Convs have no bias.

    Shapes: [B, in_planes, H, W] -> [B, planes, ceil(H / stride), ceil(W / stride)].
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1, norm: str = "instancenorm"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = _norm2d(norm, planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = _norm2d(norm, planes)
        self.shortcut = nn.Sequential()  # empty: the identity (the authors' key layout has no shortcut.* then)
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                          _norm2d(norm, planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(_Network):
    """ResNet18 of the DC code (``get_network('ResNet18', ...)``; not its ``ResNet18_AP``): a CIFAR stem conv3x3(64,
    stride 1, no max-pool; padding 1 for any channel count) -> norm -> ReLU, four stages of two `BasicBlock` s
    (64, 128, 256, 512; stride 1, 2, 2, 2), 4x4 average pooling (kernel 4, stride 4), then the classifier.

    The classifier is the DOORPING code's (baadd ``DC/networks.py``): Linear(512, 512) -> Linear(512, classes),
    no activation between (so the second-to-last weight, which DOORPING's trigger update reads, is a Linear's);
    ``hidden=0`` gives the single Linear(512, classes) of the Dataset Condensation repository's ResNet18.

    Args:
        channels, num_classes, image_size: input channels, classes, input side in pixels.
        norm: ``"instancenorm"`` (``ResNet18``, the evaluation pool's; GroupNorm(C, C)) or ``"batchnorm"``
            (``ResNet18BN``).
        hidden: width of the first classifier Linear (baadd: 512, the feature width); 0: the DC linear head.
        mean, std: dataset normalisation recorded in ``input_spec``, one value per channel (None: 0.5 each).

    Shapes: [B, channels, S, S] -> [B, num_classes]; ``embed`` -> [B, 512 * s * s], s = floor(ceil(S / 8) / 4)
    (1 for 25 <= S <= 56, so at 32 px: the 512 features the authors' classifier hard-codes).
    """

    def __init__(self, channels: int = 3, num_classes: int = 10, image_size: int = 32, norm: str = "instancenorm",
                 hidden: int = 512, mean=None, std=None):
        super().__init__()
        check_ints(channels=channels, num_classes=num_classes, image_size=image_size)
        check_ints(0, hidden=hidden)
        _check_norm(norm, "ResNet18")
        self.conv1 = nn.Conv2d(channels, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = _norm2d(norm, 64)
        blocks, in_planes, side = [], 64, image_size
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks.append(nn.Sequential(BasicBlock(in_planes, planes, stride, norm),
                                        BasicBlock(planes, planes, 1, norm)))
            in_planes, side = planes, (side - 1) // stride + 1
        self.layer1, self.layer2, self.layer3, self.layer4 = blocks
        side //= 4
        if side < 1:
            raise ZooError(f"image_size {image_size} is too small for ResNet18 (its 4x4 average pooling needs 4x4 "
                           f"maps after three stride-2 stages): use 32")
        self.num_features = in_planes * side * side
        if hidden:
            self.classifier = nn.Sequential(nn.Linear(self.num_features, hidden), nn.Linear(hidden, num_classes))
            self.penultimate = "classifier.0"
        else:
            self.classifier = nn.Linear(self.num_features, num_classes)
            self.penultimate = "layer4.1.conv2"  # the last conv, as for the DC ConvNet
        self.input_spec = _spec(channels, image_size, mean, std)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> pooled, flattened features [B, num_features]."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return F.avg_pool2d(out, 4).flatten(1)


def doorping_convnet(**kwargs) -> ConvNet:
    """DOORPING's ConvNet: 3 x [conv 128, ReLU, avg-pool], no normalisation, FC 2048 -> 192 -> classes."""
    return ConvNet(norm="none", hidden=192, **kwargs)


def doorping_convnet_in(**kwargs) -> ConvNet:
    """The standard DC/DSA/DM ConvNet: 3 x [conv 128, instance norm, ReLU, avg-pool], FC 2048 -> classes."""
    return ConvNet(norm="instancenorm", hidden=0, **kwargs)


def doorping_alexnet(**kwargs) -> AlexNetCifar:
    """AlexNet-CIFAR of the authors' code (penultimate layer FC 384 -> 192)."""
    return AlexNetCifar(**kwargs)


def doorping_vgg11(**kwargs) -> VGG11:
    """VGG11 of the authors' cross-architecture evaluation pool (DC code, instance norm, Linear 512 -> classes)."""
    return VGG11(**kwargs)


def doorping_resnet18(**kwargs) -> ResNet18:
    """ResNet18 of the authors' cross-architecture evaluation pool (DC code, instance norm; baadd's classifier
    Linear 512 -> 512 -> classes)."""
    return ResNet18(**kwargs)

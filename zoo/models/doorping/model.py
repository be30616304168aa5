"""The networks of DOORPING's distillation code: ConvNet (no normalisation, 192-unit penultimate layer), the standard
DC ConvNet (instance norm, linear head) and AlexNet-CIFAR ("AlexCifarNet").

Module names and indices follow the authors' layout (``features.N``, ``classifier.N``), so their saved evaluation
networks load without renaming (`zoo.models.doorping.convert`). Every network exposes

* ``forward(x: [B, C, H, W]) -> logits [B, num_classes]``;
* ``embed(x) -> [B, D]``: the flattened features before the classifier (what distribution matching compares);
* ``penultimate``: the dotted name of the layer whose units DOORPING selects from (its weight's rows are the units'
  incoming weights); a name, not a second reference, so ``state_dict`` and ``torch.func`` see each layer once;
* ``get_classifier()``: the last Linear layer; ``input_spec``: input size, mean and std of its dataset.

1-channel inputs use padding 3 in the first convolution, as in the authors' ConvNet: at the 32 px they train
Fashion-MNIST and MNIST at (resized, `zoo.models.doorping.data`) the first map is 36 x 36 and the features are
still 128 x 4 x 4 = 2048 (as for 28 px input).
"""

from __future__ import annotations

import torch
from torch import nn

from ...errors import ZooError


def _spec(channels: int, image_size: int, mean, std) -> dict:
    """``input_spec`` of a [channels, image_size, image_size] input; mean / std None: 0.5 for every channel.
    ``fixed_size``: the classifier's input width is sized for this side, so no other side works."""
    mean = (0.5,) * channels if mean is None else mean
    std = (0.5,) * channels if std is None else std
    if len(mean) != channels or len(std) != channels:
        raise ZooError(f"mean {list(mean)} and std {list(std)} need one value per channel ({channels})")
    return {"input_size": [channels, image_size, image_size], "mean": [float(m) for m in mean],
            "std": [float(s) for s in std], "interpolation": "bilinear", "crop_pct": 1.0, "fixed_size": True}


class ConvNet(nn.Module):
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
        if norm not in ("none", "instancenorm"):
            raise ZooError(f"ConvNet norm must be 'none' or 'instancenorm', got {norm!r}")
        layers, c, side = [], channels, image_size
        for d in range(depth):
            pad = 3 if channels == 1 and d == 0 else 1
            layers.append(nn.Conv2d(c, width, 3, padding=pad))
            side = side + 2 * pad - 2
            if norm == "instancenorm":
                layers.append(nn.GroupNorm(width, width, affine=True))
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

    def get_classifier(self) -> nn.Linear:
        return self.classifier[-1] if isinstance(self.classifier, nn.Sequential) else self.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


class AlexNetCifar(nn.Module):
    """AlexNet for 32 px images (the authors' ``AlexNet``): conv5x5(64) -> ReLU -> MaxPool3/2 -> LRN ->
    conv5x5(64) -> ReLU -> LRN -> MaxPool3/2 -> FC 384 -> FC 192 -> FC num_classes.

    Shapes: [B, C, S, S] -> [B, num_classes]; ``embed`` -> [B, 64 * s * s], s = ceil(ceil(S / 2) / 2) (4096 for
    S = 32; the authors' code hard-codes 4096, so it only runs at 32 px).
    """

    def __init__(self, channels: int = 3, num_classes: int = 10, image_size: int = 32, mean=None, std=None):
        super().__init__()
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

    def get_classifier(self) -> nn.Linear:
        return self.classifier[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


def doorping_convnet(**kwargs) -> ConvNet:
    """DOORPING's ConvNet: 3 x [conv 128, ReLU, avg-pool], no normalisation, FC 2048 -> 192 -> classes."""
    return ConvNet(norm="none", hidden=192, **kwargs)


def doorping_convnet_in(**kwargs) -> ConvNet:
    """The standard DC/DSA/DM ConvNet: 3 x [conv 128, instance norm, ReLU, avg-pool], FC 2048 -> classes."""
    return ConvNet(norm="instancenorm", hidden=0, **kwargs)


def doorping_alexnet(**kwargs) -> AlexNetCifar:
    """AlexNet-CIFAR of the authors' code (penultimate layer FC 384 -> 192)."""
    return AlexNetCifar(**kwargs)

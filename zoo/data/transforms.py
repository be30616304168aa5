"""Image transforms derived from a model's input specification.

An input spec is a dict: ``{"input_size": [C, H, W], "mean": [...], "std": [...], "interpolation": "bilinear",
"crop_pct": 1.0}``, optionally with ``"crop_mode"`` (``"center"`` or ``"squash"``, see `eval_transform`). Every
model that takes images carries one as ``model.input_spec``, so data pipelines never hard-code a dataset's
statistics.
"""

from __future__ import annotations

import math

from torchvision import transforms as T

from ..errors import ZooError
from .images import to_eight_bit

CROP_MODES = ("center", "squash")  # timm's names; its "border" mode is not implemented
_INTERP = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC,
           "nearest": T.InterpolationMode.NEAREST}
INTERPOLATIONS = tuple(_INTERP)  # the ``input_spec["interpolation"]`` values these transforms know


class ConvertMode:
    """PIL ``convert`` to the model's channel count ("L" for 1 channel, "RGB" for 3), 16-bit, 32-bit integer and
    float images scaled to 8 bits first (`zoo.data.images.to_eight_bit`; ``convert`` alone clips them at 255)."""

    def __init__(self, channels: int):
        self.mode = "L" if channels == 1 else "RGB"

    def __call__(self, im):
        return to_eight_bit(im).convert(self.mode)


def eval_transform(spec: dict):
    """Convert to the model's channels, resize by ``crop_pct``, centre-crop, tensor, normalise: -> [C, H, W].

    As timm's ``crop_mode``: by default (``"center"``) a square input has its shorter side resized to
    ``floor(H / crop_pct)`` and the aspect ratio kept, so a non-square image is cropped (MAE's and TinyMIM's
    ``Resize(int(224 / crop_pct))``, the kNN-OOD authors' ImageNet ``Resize(256)``); with ``"squash"``, and for a
    non-square input, each side is resized to ``floor(size / crop_pct)`` (the kNN-OOD authors' CIFAR-scale
    ``Resize((32, 32))``, which squashes a non-square OOD image)."""
    c, h, w = spec["input_size"]
    crop_pct = spec.get("crop_pct", 1.0)
    interp = _INTERP[spec.get("interpolation", "bilinear")]
    mode = spec.get("crop_mode", "center")
    if mode not in CROP_MODES:
        raise ZooError(f"input_spec crop_mode {mode!r} is not supported: give one of {', '.join(CROP_MODES)}")
    squash = mode == "squash" or h != w
    resize = (math.floor(h / crop_pct), math.floor(w / crop_pct)) if squash else math.floor(h / crop_pct)
    return T.Compose([
        ConvertMode(c),
        T.Resize(resize, interpolation=interp),
        T.CenterCrop((h, w)),
        T.ToTensor(),
        T.Normalize(spec["mean"], spec["std"]),
    ])


def train_transform(spec: dict):
    """Standard augmentation: pad-4 random crop + flip for small images (CIFAR), random-resized crop otherwise."""
    c, h, w = spec["input_size"]
    interp = _INTERP[spec.get("interpolation", "bilinear")]
    if max(h, w) <= 64:
        geo = [T.Resize((h, w), interpolation=interp), T.RandomCrop((h, w), padding=4)]
    else:
        geo = [T.RandomResizedCrop((h, w), interpolation=interp)]
    return T.Compose([
        ConvertMode(c),
        *geo,
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(spec["mean"], spec["std"]),
    ])


def contrastive_transform(spec: dict):
    """SimCLR/SupCon augmentation (Khosla et al. 2020): random-resized crop (scale 0.2-1), flip, colour jitter
    (0.4, 0.4, 0.4, 0.1) with p=0.8, grey with p=0.2."""
    c, h, w = spec["input_size"]
    return T.Compose([
        ConvertMode(c),
        T.RandomResizedCrop((h, w), scale=(0.2, 1.0), interpolation=_INTERP[spec.get("interpolation", "bilinear")]),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.ToTensor(),
        T.Normalize(spec["mean"], spec["std"]),
    ])


class TwoViews:
    """Apply ``transform`` twice to one image: -> [2, C, H, W] (the two views of contrastive training)."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, im):
        import torch

        return torch.stack([self.transform(im), self.transform(im)])


def fit_transform(spec: dict, augment: str):
    """Training-time transform by name: ``standard``, ``contrastive`` (two views) or ``none`` (eval transform)."""
    if augment == "standard":
        return train_transform(spec)
    if augment == "contrastive":
        return TwoViews(contrastive_transform(spec))
    if augment == "none":
        return eval_transform(spec)
    from ..errors import ZooError

    raise ZooError(f"unknown augment {augment!r}; choose standard, contrastive or none")

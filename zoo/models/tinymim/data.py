"""Training views of the three TinyMIM stages, on top of the shared image-classification DataModule.

* ``mae`` (MAE pre-training): random-resized crop (scale 0.2-1, bicubic) + horizontal flip -> ``[C, H, W]``.
* ``distill`` (TinyMIM): one shared crop and flip per image, then a teacher view (normalised only) and a student
  view (colour jitter 0.4/0.4/0.4, then normalised), as the authors' ``TwoCropsTransform`` -> ``[2, C, H, W]``
  with the teacher's view first.
* ``finetune`` (MAE fine-tuning): timm's training transform: random-resized crop, flip, RandAugment
  (``rand-m9-mstd0.5-inc1``), random erasing (p 0.25, per-pixel noise) -> ``[C, H, W]``.

Validation and test splits use the shared evaluation transform (resize + centre crop) for every stage.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision import transforms as T

from ...data.classification import ImageClassificationDataModule
from ...data.transforms import ConvertMode
from ...errors import ZooError, require

VIEWS = ("mae", "distill", "finetune")


def _geometry(spec: dict, crop_scale) -> list:
    c, h, w = spec["input_size"]
    interp = T.InterpolationMode(spec.get("interpolation", "bicubic"))
    return [ConvertMode(c), T.RandomResizedCrop((h, w), scale=tuple(crop_scale), interpolation=interp),
            T.RandomHorizontalFlip()]


def _normalise(spec: dict) -> list:
    return [T.ToTensor(), T.Normalize(spec["mean"], spec["std"])]


def mae_transform(spec: dict, crop_scale=(0.2, 1.0)):
    """MAE pre-training view: PIL image -> ``[C, H, W]``."""
    return T.Compose(_geometry(spec, crop_scale) + _normalise(spec))


class DistillViews:
    """TinyMIM's input split: PIL image -> ``[2, C, H, W]`` = (teacher view, student view) of one shared crop."""

    def __init__(self, spec: dict, crop_scale=(0.2, 1.0), color_jitter: float = 0.4):
        self.shared = T.Compose(_geometry(spec, crop_scale))
        self.teacher = T.Compose(_normalise(spec))
        jitter = [T.ColorJitter(color_jitter, color_jitter, color_jitter)] if color_jitter > 0 else []
        self.student = T.Compose(jitter + _normalise(spec))

    def __call__(self, image) -> torch.Tensor:
        crop = self.shared(image)
        return torch.stack([self.teacher(crop), self.student(crop)])


def finetune_transform(spec: dict, crop_scale=(0.08, 1.0), rand_augment: str | None = "rand-m9-mstd0.5-inc1",
                       random_erasing: float = 0.25, color_jitter: float = 0.4):
    """MAE fine-tuning view (timm ``create_transform``): PIL image -> ``[C, H, W]``. ``color_jitter`` applies only
    without RandAugment (timm's rule; MAE's recipe has RandAugment, so no jitter); 0 turns it off."""
    timm_data = require("timm.data", "tinymim", package="timm")
    c, h, w = spec["input_size"]
    return T.Compose([ConvertMode(c), timm_data.create_transform(
        input_size=(c, h, w), is_training=True, scale=tuple(crop_scale), interpolation=spec.get("interpolation",
                                                                                                "bicubic"),
        auto_augment=rand_augment or None, color_jitter=color_jitter or None, re_prob=random_erasing,
        re_mode="pixel", re_count=1,
        mean=tuple(spec["mean"]), std=tuple(spec["std"]))])


class TinyMIMDataModule(ImageClassificationDataModule):
    """`ImageClassificationDataModule` with the training view of one TinyMIM stage (see the module docstring).

    Args:
        data, batch_size, num_workers, val_fraction, train_subset, test_subset, input_spec, seed: as the parent.
        views: ``mae``, ``distill`` or ``finetune``.
        crop_scale: random-resized-crop area range (MAE/TinyMIM pre-training 0.2-1; fine-tuning 0.08-1).
        color_jitter: colour jitter strength (0 disables it): the student-only jitter of the ``distill`` views, and
            the ``finetune`` view's when ``rand_augment`` is off (with RandAugment timm applies none).
        rand_augment: timm RandAugment policy of the ``finetune`` view (empty or None disables it).
        random_erasing: random-erasing probability of the ``finetune`` view.
    """

    def __init__(self, data: str = "cifar10_jpeg", batch_size: int = 128, num_workers: int = 2,
                 val_fraction: float = 0.1, train_subset: int | None = None, test_subset: int | None = None,
                 input_spec: dict[str, Any] | None = None, seed: int = 0, views: str = "finetune",
                 crop_scale: tuple[float, float] = (0.2, 1.0), color_jitter: float = 0.4,
                 rand_augment: str | None = "rand-m9-mstd0.5-inc1", random_erasing: float = 0.25):
        if views not in VIEWS:
            raise ZooError(f"views must be one of {', '.join(VIEWS)}, got {views!r}")
        if not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise ZooError(f"crop_scale must satisfy 0 < min <= max <= 1, got {crop_scale}")
        super().__init__(data=data, batch_size=batch_size, num_workers=num_workers, val_fraction=val_fraction,
                         train_subset=train_subset, test_subset=test_subset, augment="none",
                         input_spec=input_spec, seed=seed)
        # the parent records this class's arguments; its own training transform is replaced in `setup`
        self.hparams["augment"] = "none"

    def train_view(self, spec: dict):
        """The training transform of this stage for a model input spec."""
        hp = self.hparams
        if hp.views == "mae":
            return mae_transform(spec, hp.crop_scale)
        if hp.views == "distill":
            return DistillViews(spec, hp.crop_scale, hp.color_jitter)
        return finetune_transform(spec, hp.crop_scale, hp.rand_augment, hp.random_erasing, hp.color_jitter)

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        self.train_set.transform = self.train_view(self._spec())

"""The DataModule of distillation: the real training split to distil from and the test split for in-run
evaluation, in memory (`zoo.models.doorping.real_images`)."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from ...errors import ZooError
from .real_images import RealImages, load_real


def _check_same_kind(data: str, train: RealImages, test: RealImages) -> None:
    """The test split must have the training split's image shape and classes (in the same order: a label is a
    class's index), or the in-run evaluation would score against other classes."""
    if test.shape != train.shape:
        raise ZooError(f"{data}: test images are {list(test.shape)} but training images {list(train.shape)}; give "
                       f"both splits the same channels and size (or set image_size)")
    if test.classes != train.classes:
        raise ZooError(f"{data}: the test split's classes {test.classes} are not the training split's "
                       f"{train.classes}; give both splits the same class folders")


class _Ticks(Dataset):
    """``n`` placeholder items: one per distillation iteration (the module samples its own real images)."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


class DistillationData(pl.LightningDataModule):
    """The real training split (to distil from) and test split (for in-run evaluation), in memory.

    One training "batch" is one distillation iteration: an epoch has the LightningModule's ``iterations`` of them
    (run one epoch); validation (``trainer.val_check_interval`` iterations apart) trains networks on the current
    synthetic set.

    Args:
        data: catalogue name, folder or archive (``fashion_mnist``, ``cifar10_jpeg``, a CIFAR-100/SVHN/STL-10
            image tree...).
        name: dataset name written into the distilled set (default: derived from ``data``).
        image_size: resize to this side; default: 32 px for MNIST, Fashion-MNIST and STL-10 (the authors' size,
            `zoo.models.doorping.real_images.AUTHORS_SIZE`), the native size otherwise.
    """

    def __init__(self, data: str = "cifar10_jpeg", name: str | None = None, image_size: int | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.train_images: RealImages | None = None
        self.test_images: RealImages | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_images is not None:
            return
        hp = self.hparams
        self.train_images = load_real(hp.data, "train", image_size=hp.image_size, name=hp.name)
        t = self.train_images
        self.test_images = load_real(hp.data, "test", image_size=hp.image_size, mean=t.mean, std=t.std, name=t.name)
        _check_same_kind(hp.data, t, self.test_images)

    def train_dataloader(self) -> DataLoader:
        module = self.trainer.lightning_module if self.trainer is not None else None
        iterations = getattr(getattr(module, "hparams", None), "iterations", None)
        if not iterations:
            raise ZooError("DistillationData feeds a distillation module (zoo.models.doorping.distill) with an "
                           "'iterations' argument")
        return DataLoader(_Ticks(iterations), batch_size=None)

    def val_dataloader(self) -> DataLoader:
        # its own generator: a loader without one draws its workers' base seed from torch's at every validation,
        # which would shift the distillation's draws (and a resumed run's) by the in-run evaluation
        return DataLoader(_Ticks(1), batch_size=None, generator=torch.Generator())

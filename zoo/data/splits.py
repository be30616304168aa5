"""`SplitDataModule`: the train/val/test/predict dataloaders every zoo DataModule exposes, built by one
``_loader(dataset, shuffle)`` that the subclass defines (batch size, workers, collate, and for shuffling the
dataset and sampler of `zoo.data.sampling.seeded_training`, whose order and augmentation a resumed run repeats)."""

from __future__ import annotations

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from ..errors import ZooError


def check_loader_args(batch_size: int, num_workers: int) -> None:
    """A `ZooError` naming the option for a batch size below 1 or a negative worker count (PyTorch's DataLoader
    would fail with a traceback, after the data's setup)."""
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ZooError(f"batch_size must be a whole number >= 1, got {batch_size!r} (--data.init_args.batch_size)")
    if not (isinstance(num_workers, int) and num_workers >= 0):
        raise ZooError(f"num_workers must be a whole number >= 0, got {num_workers!r} "
                       f"(--data.init_args.num_workers; 0 loads in the main process)")


class SplitDataModule(pl.LightningDataModule):
    """Subclasses set ``train_set``, ``val_set``, ``test_set`` in ``setup`` and define ``_loader``."""

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

"""`SplitDataModule`: the train/val/test/predict dataloaders every zoo DataModule exposes, built by one
``_loader(dataset, shuffle)`` that the subclass defines (batch size, workers, collate, and for shuffling the
dataset and sampler of `zoo.data.sampling.seeded_training`, whose order and augmentation a resumed run repeats)."""

from __future__ import annotations

import pytorch_lightning as pl
from torch.utils.data import DataLoader


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

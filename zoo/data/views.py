"""Lightning-free views of an image source for training and evaluation: a subset with a transform
(`TransformView`) and seeded subsets (`seeded_subset`)."""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset


class TransformView(Dataset):
    """``base[indices[i]]`` with ``transform`` applied to the image. Items: ``(Tensor[C, H, W], int)``."""

    def __init__(self, base, indices, transform):
        self.base, self.indices, self.transform = base, np.asarray(indices), transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        image, label = self.base[int(self.indices[i])]
        return self.transform(image), label


def seeded_subset(n: int, size: int | None, seed: int) -> np.ndarray:
    """``size`` indices out of ``range(n)`` drawn without replacement by a seeded generator (all if None)."""
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))

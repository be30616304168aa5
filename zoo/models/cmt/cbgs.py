"""Class-balanced grouping and sampling (CBGS, Zhu et al. 2019), the training-set resampling of every CMT recipe
(mmdet3d's ``CBGSDataset``).

Each frame counts once for every class it holds. With D the sum of those counts over the C classes, each class
present gets floor(D / C) frames drawn with replacement from the frames that hold it, so frames with rare classes
recur; the index list is drawn once (not per epoch), as mmdet3d's. A class with no frame gets none (mmdet3d
divides by zero there).
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset


def cbgs_indices(frame_labels: list[np.ndarray], n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Resampled frame indices.

    Args:
        frame_labels: per frame, the class indices of its boxes (repeats allowed).
        n_classes: C.
    Returns:
        [sum over present classes of floor(D / C)] int64 indices into ``frame_labels``.
    """
    present = [set(np.asarray(labels).tolist()) for labels in frame_labels]
    holders = [[f for f, classes in enumerate(present) if c in classes] for c in range(n_classes)]
    total = sum(len(h) for h in holders)
    draws = [rng.choice(h, total // n_classes) for h in holders if h]
    return np.concatenate(draws).astype(np.int64) if draws else np.zeros(0, np.int64)


class CBGSDataset(Dataset):
    """A dataset seen through `cbgs_indices`; ``dataset`` must have ``frame_labels()`` (per-frame class indices)."""

    def __init__(self, dataset, n_classes: int, seed: int = 0):
        self.dataset = dataset
        self.indices = cbgs_indices(dataset.frame_labels(), n_classes, np.random.default_rng(seed))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return self.dataset[int(self.indices[index])]

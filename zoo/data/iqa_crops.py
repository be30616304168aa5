"""`IQACrops`: several crops per image of an `IQATable`'s rows, the items of `zoo.data.iqa_datamodule.IQADataModule`
and of ``zoo eval --task iqa`` (Lightning-free).

Items are ``(crops [K, 3, S, S], score float32, level int64, row int64)``. As in the PMT-IQA / HyperIQA code:

* training: ``crops`` (4) independent random S x S crops per image, each flipped horizontally with p = 0.5,
  drawn afresh every epoch;
* validation / test: ``test_crops`` (4) random crops, no flip; the model's prediction is their mean. The crops are
  seeded by ``crop_seed`` and a hash of the image file's bytes (`image_seed`), so an evaluation is repeatable (the
  authors' are not) and an image gets the same crops whatever table, row, folder or split it is read from (a
  test-only copy of a dataset, a CSV of absolute paths, ``zoo eval``'s test rows or the whole table).

Images are optionally resized first (``resize: [H, W]``; the authors use 512 x 512 for BID and resize KonIQ to
512 x 384).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import ZooError
from .images import load_image
from .iqa import IQATable


def image_tensor(path, resize=None) -> torch.Tensor:
    """One image as float [3, H, W] in [0, 1], optionally resized to ``resize`` = (H, W) first."""
    im = load_image(path).convert("RGB")
    if resize is not None:
        im = im.resize((int(resize[1]), int(resize[0])), Image.BILINEAR)
    return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float().div_(255)


def image_seed(path, seed: int = 0) -> int:
    """The generator seed of one image's evaluation crops: a 63-bit hash of the file's bytes and ``seed``.

    Keyed by the image itself, not by its row in a table: the same file gets the same crops in every table it sits
    in (earlier versions seeded by ``seed * 1_000_003 + row``, which gave an image different crops in ``zoo eval``'s
    test-only table and in the whole table)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ZooError(f"cannot read image {path}: {exc}") from None
    h = hashlib.blake2b(data, digest_size=16)
    h.update(int(seed).to_bytes(8, "little", signed=True))
    return int.from_bytes(h.digest()[:8], "little") >> 1


def crop_offsets(height: int, width: int, size: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """``k`` random top-left corners [k, 2] of ``size`` x ``size`` crops inside a ``height`` x ``width`` image."""
    return torch.stack([torch.randint(0, height - size + 1, (k,), generator=generator),
                        torch.randint(0, width - size + 1, (k,), generator=generator)], 1)


class IQACrops(Dataset):
    """``K`` crops per row of ``table``.

    Args:
        table: the dataset; rows: the table rows of this split; levels: quality level per table row.
        size: crop size; mean, std: normalisation; crops: K.
        train: random crops and flips from torch's global generator (seeded per worker by Lightning);
            otherwise crops seeded by ``seed`` and the image's bytes (`image_seed`) and no flip.
        resize: optional (H, W) applied before cropping.
    """

    def __init__(self, table: IQATable, rows, levels: torch.Tensor, size: int, mean, std, crops: int,
                 train: bool, resize=None, seed: int = 0):
        if resize is not None and (len(resize) != 2 or min(int(v) for v in resize) < 1):
            raise ZooError(f"resize {list(resize)} is not a size; give [H, W], two positive pixel counts")
        self.table, self.rows, self.levels = table, np.asarray(rows, dtype=np.int64), levels
        self.size, self.crops, self.train, self.resize, self.seed = size, crops, train, resize, seed
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.rows)

    def crop_batch(self, row: int, generator: torch.Generator | None, flip: bool) -> torch.Tensor:
        """[K, 3, S, S] normalised crops of table row ``row``."""
        img = image_tensor(self.table.paths[row], self.resize)
        _, h, w = img.shape
        if min(h, w) < self.size:
            raise ZooError(f"image {self.table.paths[row]} is {w}x{h}, smaller than the {self.size}x{self.size} "
                           f"crop; resize it (resize: [H, W]) or drop it")
        out = []
        for y, x in crop_offsets(h, w, self.size, self.crops, generator).tolist():
            c = img[:, y:y + self.size, x:x + self.size]
            if flip and torch.rand((), generator=generator) < 0.5:
                c = c.flip(2)
            out.append((c - self.mean) / self.std)
        return torch.stack(out)

    def generator(self, row: int) -> torch.Generator:
        """The seeded generator of table row ``row``'s evaluation crops (`image_seed` of its file and ``seed``)."""
        return torch.Generator().manual_seed(image_seed(self.table.paths[row], self.seed))

    def __getitem__(self, i: int):
        row = int(self.rows[i])
        gen = None if self.train else self.generator(row)
        crops = self.crop_batch(row, gen, flip=self.train)
        return crops, torch.tensor(self.table.scores[row], dtype=torch.float32), self.levels[row], torch.tensor(row)

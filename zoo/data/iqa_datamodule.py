"""`IQADataModule`: an `IQATable`, one of its splits, and several random crops per image (`zoo.data.iqa_crops`
for the items and how the crops are drawn and seeded).

Quality levels are equal-width bins of the table's score scale (`IQATable.levels`). The crop size and the
normalisation come from the model's ``input_spec``.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..errors import ZooError
from .iqa import IQATable, read_table
from .iqa_crops import IQACrops
from .iqa_splits import load_split_file, official_split, random_splits
from .sampling import seeded_training
from .splits import SplitDataModule, check_loader_args
from .workers import ignore_foreign_sigterm

SPLITS = ("random", "official")  # besides a path to a pyiqa .pkl split file


class IQADataModule(SplitDataModule):
    """Train / val / test loaders of crops over one IQA dataset.

    Args:
        data: catalogue name or folder (see `zoo.data.iqa.read_table`); layout, csv, image_col, score_col,
            score_range: passed to `read_table`.
        split: ``random`` (round ``split_index`` of the ``rounds``-round protocol), ``official`` (the dataset's
            own train/test) or a pyiqa ``.pkl`` split file (split ``split_index``; where it has no ``test`` rows,
            its ``val`` rows are the test part, see `zoo.data.iqa_splits.load_split_file`).
        split_index: 1-based round / split number (pyiqa's convention).
        rounds, test_fraction, val_fraction, seed: the random protocol (80/20 train/test; validation carved
            from the training side); the seed also draws the training order and each training image's crops
            (`zoo.data.sampling`).
        crops, test_crops: crops per image in training / evaluation (the paper: 4 and 4).
        resize: optional [H, W] applied before cropping.
        train_subset, val_subset, test_subset: use only this many rows of each part (seeded), for small recipes.
        batch_size: images per batch (each gives ``crops`` crops; the authors: 12); num_workers: loader workers.
        input_spec, num_levels: default to the fitted LightningModule's.
        crop_seed: seed of the evaluation crops (combined with a hash of each image file,
            `zoo.data.iqa_crops.image_seed`).
    """

    def __init__(self, data: str = "biq2021_subset", layout: str = "auto", csv: str | None = None,
                 image_col: str | None = None, score_col: str | None = None, score_range: list[float] | None = None,
                 split: str = "random", split_index: int = 1, rounds: int = 10, test_fraction: float = 0.2,
                 val_fraction: float = 0.1, seed: int = 123, crops: int = 4, test_crops: int = 4,
                 resize: list[int] | None = None, train_subset: int | None = None, val_subset: int | None = None,
                 test_subset: int | None = None, batch_size: int = 12, num_workers: int = 2,
                 input_spec: dict[str, Any] | None = None, num_levels: int | None = None, crop_seed: int = 0):
        super().__init__()
        check_loader_args(batch_size, num_workers)
        if crops < 1 or test_crops < 1:
            raise ZooError(f"crops and test_crops must be >= 1, got {crops} and {test_crops}")
        subsets = {"train_subset": train_subset, "val_subset": val_subset, "test_subset": test_subset}
        bad = {k: v for k, v in subsets.items() if v is not None and v < 1}
        if bad:
            raise ZooError(f"{', '.join(f'{k}={v}' for k, v in bad.items())}: a subset takes at least 1 row; "
                           f"leave it unset (null) to use the whole part")
        if split not in SPLITS and not Path(split).is_file():
            close = difflib.get_close_matches(split, SPLITS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ZooError(f"unknown split {split!r} (not a split name, and no such split file); {hint}pass "
                           f"{' or '.join(SPLITS)}, or the path of an existing pyiqa .pkl split file")
        self.save_hyperparameters()
        self.input_spec, self.num_levels = input_spec, num_levels

    def _from_module(self, name: str):
        value = getattr(self, name)
        if value is None:
            module = self.trainer.lightning_module if self.trainer is not None else None
            value = getattr(module, name, None)
        if value is None:
            raise ZooError(f"IQADataModule needs {name}: pass data.{name} or fit a PMTIQAModule")
        return value

    def split_rows(self, table: IQATable) -> dict[str, np.ndarray]:
        """Row indices of train / val / test for the configured split."""
        hp = self.hparams
        if hp.split == "random":
            splits = random_splits(table, hp.rounds, hp.test_fraction, hp.val_fraction, hp.seed)
        elif hp.split == "official":
            splits = [official_split(table, hp.val_fraction, hp.seed)]
        else:
            splits = load_split_file(hp.split, table, hp.val_fraction, hp.seed)
        if not 1 <= hp.split_index <= len(splits):
            raise ZooError(f"split_index {hp.split_index} is out of range: {len(splits)} split(s) available")
        parts = splits[hp.split_index - 1]
        subsets = {"train": hp.train_subset, "val": hp.val_subset, "test": hp.test_subset}
        rng = np.random.default_rng(hp.seed)
        return {p: (np.sort(rng.choice(rows, subsets[p], replace=False))
                    if subsets[p] is not None and subsets[p] < len(rows) else rows) for p, rows in parts.items()}

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        spec, num_levels = self._from_module("input_spec"), self._from_module("num_levels")
        self.table = read_table(hp.data, hp.layout, hp.csv, hp.image_col, hp.score_col, hp.score_range)
        self.table.check_files()
        self.rows = self.split_rows(self.table)
        self.check_eval_scores(stage)
        levels = torch.from_numpy(self.table.levels(num_levels))
        size = spec["input_size"][-1]

        def crops(part: str, train: bool) -> IQACrops:
            return IQACrops(self.table, self.rows[part], levels, size, spec["mean"], spec["std"],
                            hp.crops if train else hp.test_crops, train, hp.resize, hp.crop_seed)

        self.train_set, self.val_set, self.test_set = crops("train", True), crops("val", False), crops("test", False)

    def check_eval_scores(self, stage: str | None = None) -> None:
        """Refuse a validation or test part of 3 or more images whose scores are all equal: its SRCC / PLCC would
        be undefined (parts of 1 or 2 images get no correlations at all). When fitting (``stage`` ``fit`` or None) a
        module that selects its epoch on validation (``select_on_val``), refuse a validation part of fewer than 3
        images too: it has no SRCC, so no epoch would be selected and the last one would be kept without a word."""
        hp = self.hparams
        module = self.trainer.lightning_module if self.trainer is not None else None
        selects = bool(getattr(module, "hparams", {}).get("select_on_val", False))
        n_val = len(self.rows["val"])
        if selects and n_val < 3 and stage in (None, "fit"):
            raise ZooError(f"{self.table.name}: the validation part has {n_val} image(s), and selecting the epoch on "
                           f"validation SRCC (select_on_val) needs at least 3; raise val_fraction (now "
                           f"{hp.val_fraction}) or val_subset (now {hp.val_subset}), or keep the last epoch with "
                           f"the model's select_on_val: false (--model.init_args.select_on_val false)")
        for part in ("val", "test"):
            scores = self.table.scores[self.rows[part]]
            if len(scores) >= 3 and (scores == scores[0]).all():
                raise ZooError(f"{self.table.name}: all {len(scores)} images of the {part} part have score "
                               f"{scores[0]:g}, so its correlations are undefined; use more {part} rows "
                               f"({part}_subset), another split or seed, or data whose scores differ")

    def _loader(self, ds, shuffle: bool) -> DataLoader:
        hp = self.hparams
        ds, sampler = seeded_training(ds, hp.seed, hp.batch_size) if shuffle else (ds, None)
        return DataLoader(ds, batch_size=hp.batch_size, sampler=sampler,
                          num_workers=hp.num_workers, persistent_workers=hp.num_workers > 0,
                          worker_init_fn=ignore_foreign_sigterm)


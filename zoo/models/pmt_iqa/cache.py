"""Frozen-backbone training from cached taps: `CachedTapsDataModule`.

With the backbone frozen (``PMTIQAModule(freeze_backbone=True)``), the only inputs MS and the heads ever see are
the backbone's 7x7-average-pooled taps of each crop (`PMTIQA.pool_taps`): 3 904 numbers per crop for
EfficientNet-Lite0 instead of a 150 528-pixel crop. This DataModule computes them once for ``cache_crops``
random crops of every image of the table (each flipped with p = 0.5, seeded by ``crop_seed`` and a hash of the
image file, `zoo.data.iqa_crops.image_seed`), stores them under ``<ZOO_HOME>/cache/pmt_iqa/`` keyed by the
backbone's weights, the crop settings and each image's path, size and modification time (an image replaced in
place gets new taps; a copy of the data set with new file times builds its own cache), and then serves the same
splits as `IQADataModule`: training batches take ``crops`` of an image's cached crops at random each epoch;
evaluation takes its first ``test_crops``. The result is
the model `zoo fit` on images would train with a frozen backbone, except that the crops are drawn from a fixed pool
(what makes the CPU reproduction affordable).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ...data.iqa_crops import IQACrops
from ...data.iqa_datamodule import IQADataModule
from ...errors import ZooError
from ...hub import cache_dir
from ...io import atomic_path


class CachedTaps(Dataset):
    """Items: ``([pooled tap [K, C_i, g_i, g_i] for each tap], score, level, row)``.

    Args:
        taps: per tap, float16 [N_rows, cache_crops, C_i, g_i, g_i] for every table row.
        rows, scores, levels: the split's rows and every row's score and level.
        crops: K; train: K random cached crops per item (torch's global generator), else the first K.
    """

    def __init__(self, taps: list[torch.Tensor], rows, scores: torch.Tensor, levels: torch.Tensor, crops: int,
                 train: bool):
        self.taps, self.rows, self.scores, self.levels = taps, np.asarray(rows), scores, levels
        self.crops, self.train = crops, train

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        row = int(self.rows[i])
        pool = self.taps[0].shape[1]
        pick = torch.randperm(pool)[: self.crops] if self.train else torch.arange(self.crops)
        return [t[row, pick].float() for t in self.taps], self.scores[row], self.levels[row], torch.tensor(row)


class CachedTapsDataModule(IQADataModule):
    """`IQADataModule` over cached pooled taps of the fitted module's (frozen) backbone.

    Args:
        cache_crops: crops cached per image (>= ``crops`` and ``test_crops``); the other arguments are
            `IQADataModule`'s.
    """

    def __init__(self, *args, cache_crops: int = 4, **kwargs):
        super().__init__(*args, **kwargs)
        self.cache_crops = cache_crops

    def _cache_key(self, model) -> str:
        h = hashlib.sha256()
        for k, v in model.backbone.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        hp = self.hparams
        # "image_seed": the crops are seeded by the image file, no longer by the row; caches of row-seeded crops miss.
        # Each image's size and modification time too: an image replaced in place must not reuse its old taps.
        files = [(str(p), st.st_size, st.st_mtime_ns) for p, st in ((p, p.stat()) for p in self.table.paths)]
        h.update(repr(("image_seed", model.image_size, self.cache_crops, hp.crop_seed, hp.resize, files)).encode())
        return h.hexdigest()[:16]

    @torch.no_grad()  # not inference_mode: the cached tensors are inputs of training steps later
    def _extract(self, model, device: torch.device) -> list[torch.Tensor]:
        """Pooled taps of ``cache_crops`` flipped random crops of every table row: per tap, float16
        [N_rows, cache_crops, C_i, g_i, g_i] on the CPU.

        The crops and ``model`` both go to ``device`` (the trainer's root device) for the extraction, and the model
        goes back where it was afterwards: `setup` runs before Lightning moves the module to its device, and
        Lightning moves it itself later. The global random state is left as it was (the loader draws a seed from
        it), so a run that builds the cache trains exactly as a run that reads it."""
        spec, hp = model.input_spec, self.hparams
        crops = IQACrops(self.table, np.arange(len(self.table)), torch.zeros(len(self.table), dtype=torch.long),
                         spec["input_size"][-1], spec["mean"], spec["std"], self.cache_crops, train=False,
                         resize=hp.resize, seed=hp.crop_seed)
        loader = DataLoader(_Flipped(crops), batch_size=max(1, 64 // self.cache_crops), num_workers=hp.num_workers)
        home, was_training = next(model.parameters()).device, model.training
        model.eval().to(device, memory_format=torch.channels_last)  # faster convolutions on CPUs and GPUs alike
        out: list[list[torch.Tensor]] = []
        try:
            with torch.random.fork_rng(devices=[]):
                for x in loader:
                    pooled = model.pool_taps(x.flatten(0, 1).to(device).contiguous(memory_format=torch.channels_last))
                    out.append([p.reshape(len(x), self.cache_crops, *p.shape[1:]).half().cpu() for p in pooled])
        finally:
            model.train(was_training).to(home, memory_format=torch.contiguous_format)
        return [torch.cat([b[i] for b in out]) for i in range(len(out[0]))]

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        hp = self.hparams
        if max(hp.crops, hp.test_crops) > self.cache_crops:
            raise ZooError(f"crops ({hp.crops}) and test_crops ({hp.test_crops}) must not exceed cache_crops "
                           f"({self.cache_crops})")
        module = self.trainer.lightning_module if self.trainer is not None else None
        if module is None or not module.hparams.get("freeze_backbone"):
            raise ZooError("CachedTapsDataModule needs a PMTIQAModule with freeze_backbone: true (cached taps "
                           "come from a fixed backbone)")
        model = module.model
        path = cache_dir() / "cache" / "pmt_iqa" / f"{self.table.name}-{self._cache_key(model)}.pt"
        if path.exists():
            taps = torch.load(path, weights_only=True)
        else:
            taps = self._extract(model, self.trainer.strategy.root_device)
            with atomic_path(path) as tmp:
                torch.save(taps, tmp)
        scores = torch.as_tensor(self.table.scores, dtype=torch.float32)
        levels = self.train_set.levels
        self.train_set = CachedTaps(taps, self.rows["train"], scores, levels, hp.crops, train=True)
        self.val_set = CachedTaps(taps, self.rows["val"], scores, levels, hp.test_crops, train=False)
        self.test_set = CachedTaps(taps, self.rows["test"], scores, levels, hp.test_crops, train=False)

    def _loader(self, ds, shuffle: bool) -> DataLoader:
        return DataLoader(ds, batch_size=self.hparams.batch_size, shuffle=shuffle, num_workers=0)


class _Flipped(Dataset):
    """The evaluation crops of an `IQACrops`, each flipped horizontally with p = 0.5 (seeded as the crops)."""

    def __init__(self, crops: IQACrops):
        self.crops = crops

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, i: int) -> torch.Tensor:
        row = int(self.crops.rows[i])
        return self.crops.crop_batch(row, self.crops.generator(row), flip=True)

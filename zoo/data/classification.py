"""The shared image-classification DataModule: any source with train and test splits that `open_train_test`
understands, seeded splits (how labels meet a model's outputs: `zoo.data.labels`).

Transforms come from the model: unless ``input_spec`` is given, `setup` reads ``input_spec`` from the
LightningModule the trainer is fitting, so one config names the model once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch.utils.data import DataLoader

from ..errors import ZooError
from .images import open_train_test
from .sampling import seeded_training
from .splits import SplitDataModule, check_loader_args
from .transforms import eval_transform, fit_transform
from .views import TransformView, seeded_subset
from .workers import ignore_foreign_sigterm


class ImageClassificationDataModule(SplitDataModule):
    """Train / val / test loaders over one labelled image source.

    Args:
        data: catalogue name, folder or archive with train and test splits of the same classes (see
            `zoo.data.images.open_train_test`); labels index the sorted class names, recorded as ``classes``.
        batch_size, num_workers: loader settings.
        val_fraction: share of the training split held out for validation (seeded).
        train_subset, test_subset: use only this many images (seeded), for small recipes.
        augment: training transform: ``standard`` (crop + flip), ``contrastive`` (two SupCon views per image,
            items ``[2, C, H, W]``) or ``none``.
        input_spec: the model's input spec; default: the fitted LightningModule's ``input_spec``.
        seed: seed of the splits, of the training order and of each training sample's augmentation
            (`zoo.data.sampling`).
    """

    def __init__(self, data: str = "cifar10_jpeg", batch_size: int = 128, num_workers: int = 2,
                 val_fraction: float = 0.1, train_subset: int | None = None, test_subset: int | None = None,
                 augment: str = "standard", input_spec: dict[str, Any] | None = None, seed: int = 0):
        super().__init__()
        check_loader_args(batch_size, num_workers)
        if not 0.0 <= val_fraction < 1.0:
            raise ZooError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.save_hyperparameters()
        self.input_spec = input_spec

    def _spec(self) -> dict:
        if self.input_spec is not None:
            return self.input_spec
        module = self.trainer.lightning_module if self.trainer is not None else None
        spec = getattr(module, "input_spec", None)
        if spec is None:
            raise ZooError("ImageClassificationDataModule needs input_spec: pass data.input_spec or use a model "
                           "whose LightningModule exposes input_spec")
        return spec

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        spec = self._spec()
        train, test = open_train_test(hp.data)
        self.classes = train.classes
        idx = seeded_subset(len(train), hp.train_subset, hp.seed)
        perm = np.random.default_rng(hp.seed + 1).permutation(idx)
        n_val = int(round(len(perm) * hp.val_fraction))
        train_idx, val_idx = np.sort(perm[n_val:]), np.sort(perm[:n_val])
        fit_tf = fit_transform(spec, hp.augment)
        self.train_set = TransformView(train, train_idx, fit_tf)
        self.val_set = TransformView(train, val_idx, eval_transform(spec))
        self.test_set = TransformView(test, seeded_subset(len(test), hp.test_subset, hp.seed), eval_transform(spec))

    def _loader(self, ds, shuffle: bool) -> DataLoader:
        hp = self.hparams
        ds, sampler = seeded_training(ds, hp.seed, hp.batch_size) if shuffle else (ds, None)
        return DataLoader(ds, batch_size=hp.batch_size, sampler=sampler,
                          num_workers=hp.num_workers, persistent_workers=hp.num_workers > 0, drop_last=False,
                          worker_init_fn=ignore_foreign_sigterm)


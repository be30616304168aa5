"""The shared image-classification DataModule: any source with train and test splits that `open_train_test`
understands, seeded splits; and how a dataset's labels meet a model's outputs (`to_model_labels`).

Transforms come from the model: unless ``input_spec`` is given, `setup` reads ``input_spec`` from the
LightningModule the trainer is fitting, so one config names the model once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Dataset

from ..errors import ZooError
from .images import open_train_test, relabel
from .sampling import seeded_training
from .splits import SplitDataModule
from .transforms import eval_transform, fit_transform


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


def model_classes(model) -> list[str] | None:
    """The names of ``model``'s output classes in order, as its config records them (``model.zoo_cfg["classes"]``,
    which `zoo.save_pretrained` keeps), or None when it does not."""
    classes = (getattr(model, "zoo_cfg", None) or {}).get("classes")
    return [str(c) for c in classes] if classes else None


def num_outputs(model) -> int | None:
    """How many classes ``model`` scores (``get_classifier().out_features``), or None when that is not known."""
    get_classifier = getattr(model, "get_classifier", None)
    return getattr(get_classifier(), "out_features", None) if callable(get_classifier) else None


UNMATCHED = "folder names that are not the model's classes"


def to_model_labels(model, *datasets, unmatched_ok: bool = False) -> str:
    """Give the labelled ``datasets`` ``model``'s label indices, in place; returns where the labels come from,
    ``"model class names"`` or ``"sorted folder names"`` (a result's ``labels_from``).

    When the model records its class names (`model_classes`), each dataset's class (folder) names are matched to
    them: a name the model does not know is a `ZooError` naming it and the model's classes. Otherwise the labels stay
    the indices of the sorted folder names, and a dataset with more classes than the model has outputs is a
    `ZooError`. With ``unmatched_ok`` (a task that needs the labels only among the datasets, as kNN-OOD's ID data)
    those two cases leave the labels as they are and return `UNMATCHED` instead."""
    known, outputs = model_classes(model), num_outputs(model)
    arch = (getattr(model, "zoo_cfg", None) or {}).get("architecture", type(model).__name__)
    unfit = [ds for ds in datasets if (known is not None and not set(ds.classes) <= set(known))
             or (known is None and outputs is not None and len(ds.classes) > outputs)]
    if unfit and unmatched_ok:
        return UNMATCHED
    for ds in datasets:
        if known is not None:
            unknown = [c for c in ds.classes if c not in known]
            if unknown:
                raise ZooError(f"{ds.name} has classes {arch} was not trained on: {', '.join(unknown)} (its classes: "
                               f"{', '.join(known)}); name the class folders as those, or fine-tune the model on "
                               f"{ds.name} first")
            relabel(ds, known)
        elif outputs is not None and len(ds.classes) > outputs:
            raise ZooError(f"{ds.name} has {len(ds.classes)} classes ({', '.join(ds.classes)}) but {arch} has "
                           f"{outputs} outputs: use a model with one output per class, or fine-tune it on {ds.name} "
                           f"first")
    return "model class names" if known is not None else "sorted folder names"


def labels_note(result: dict) -> str:
    """A phrase for a printed result whose labels were not matched to the model's class names, else ``""``."""
    if result.get("labels_from") == "sorted folder names":
        return "; labels: the sorted folder names, as the model records no class names"
    if result.get("labels_from") == UNMATCHED:
        return "; not scored: its classes are not the model's"
    return ""


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
                          num_workers=hp.num_workers, persistent_workers=hp.num_workers > 0, drop_last=False)


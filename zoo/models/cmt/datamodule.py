"""The LightningDataModule of CMT: train / val loaders over nuScenes-format data (`zoo.models.cmt.dataset` for
what ``data`` may be and the pipeline), with GT-paste and CBGS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from ...data.nuscenes import CLASSES
from ...data.nuscenes_synthetic import VERSION as SYNTHETIC_VERSION, synthetic_nuscenes
from ...data.sampling import seeded_training
from ...data.splits import check_loader_args
from ...data.workers import ignore_foreign_sigterm
from ...errors import ZooError
from .cbgs import CBGSDataset
from .dataset import CMTDataset, collate, dataroot, holds_one_split, open_frames
from .gt_database import build_gt_database
from .model import CMT
from .object_sample import ObjectSample


class NuScenesDataModule(pl.LightningDataModule):
    """Train/val loaders over nuScenes-format data (`zoo.models.cmt.dataset` says what ``data`` may be).

    Args:
        data, version, train_split, val_split, data_root: where the frames come from.
        val_data: where the validation frames come from, when not from ``data``: an info pickle holds one split
            (mmdet3d's ``nuscenes_infos_train.pkl``; its ``_val.pkl`` goes here), so fitting on a pickle (or a
            catalogue dataset) with validation needs it; the splits do not apply to pickles.
        synthetic: `zoo.data.nuscenes_synthetic.synthetic_nuscenes` arguments when ``data="synthetic"``.
        point_cloud_range, image_size, resize_lim, sweeps, modalities, modal_mask, rot_range, scale_range,
        translation_std, flip, min_points: the pipeline (`CMTDataset`); the defaults are the authors' R50 fusion
        recipe. batch_size, num_workers: the loaders.
        gt_paste: multi-modal GT-paste: None (off), or the `ObjectSample` arguments (``{}`` for the authors'),
            ``database`` defaulting to ``<dataroot>/zoo_gt_database_<version>_<train split>_sweeps<N>``, built from
            the training split when missing (an info .pkl needs ``database`` set); ``epochs`` N: paste only in the
            first N epochs (the authors' "15e + 5e": ``epochs: 15`` of 20), which needs the trainer's
            ``reload_dataloaders_every_n_epochs`` to divide N so the loader is rebuilt at epoch N.
        cbgs: class-balanced resampling of the training frames (`CBGSDataset`), as every CMT recipe.
        seed: seed of the evaluation pipeline, of CBGS, of the training order and of each training sample's
            augmentation (`zoo.data.sampling`).

    Under a trainer, `setup` checks the pipeline against the LightningModule's CMT (`check_model`): the data
    options do not follow the model, they must match it.
    """

    def __init__(self, data: str = "synthetic", version: str = "v1.0-mini", train_split: str = "mini_train",
                 val_split: str = "mini_val", data_root: str | None = None, synthetic: dict[str, Any] | None = None,
                 point_cloud_range=(-54.0, -54.0, -5.0, 54.0, 54.0, 3.0), image_size=(320, 800),
                 resize_lim=(0.47, 0.625), sweeps: int = 10, modalities=("camera", "lidar"),
                 modal_mask: bool | list[float] = True,
                 rot_range=(-0.785, 0.785), scale_range=(0.9, 1.1), translation_std=(0.5, 0.5, 0.5),
                 flip: bool = True, min_points: int = 1, batch_size: int = 2, num_workers: int = 2, seed: int = 0,
                 gt_paste: dict[str, Any] | None = None, cbgs: bool = False, val_data: str | None = None):
        super().__init__()
        check_loader_args(batch_size, num_workers)
        self.save_hyperparameters()
        if data == "synthetic":
            train_split, val_split = "synthetic_train", "synthetic_val"
        self.train_split, self.val_split = train_split, val_split
        self.eval_source: dict | None = None

    def prepare_data(self) -> None:
        hp = self.hparams
        if hp.data == "synthetic":
            synthetic_nuscenes(**(hp.synthetic or {}))
        if hp.gt_paste is not None and not self.gt_database().is_dir():
            frames, _ = open_frames(hp.data, hp.version, self.train_split, hp.sweeps, hp.data_root, hp.synthetic)
            build_gt_database(frames, self.gt_database(), hp.sweeps)

    def gt_database(self) -> Path:
        """The GT-paste database folder (``gt_paste.database``, or the default beside the data)."""
        hp = self.hparams
        if (hp.gt_paste or {}).get("database"):
            return Path(hp.gt_paste["database"])
        if hp.data == "synthetic":
            root, version = synthetic_nuscenes(**(hp.synthetic or {})), SYNTHETIC_VERSION
        elif (root := dataroot(hp.data, hp.version)) is not None:
            version = hp.version
        else:
            raise ZooError(f"gt_paste needs gt_paste.database for data {hp.data!r} (only a dataroot has a default "
                           f"place); build one with `python -m zoo.models.cmt.gt_database --data {hp.data} --split "
                           f"{self.train_split} --out DIR`")
        return root / f"zoo_gt_database_{version}_{self.train_split}_sweeps{hp.sweeps}"

    def _dataset(self, split: str, training: bool):
        hp = self.hparams
        data = hp.data if training else (hp.val_data or hp.data)
        frames, source = open_frames(data, hp.version, split, hp.sweeps, hp.data_root, hp.synthetic)
        paste = None
        if training and hp.gt_paste is not None:
            args = {k: v for k, v in hp.gt_paste.items() if k not in ("database", "epochs")}
            unknown = sorted(set(args) - {"sample_groups", "min_points", "mixup", "rate", "paste_images"})
            if unknown:
                raise ZooError(f"gt_paste takes database, epochs, sample_groups, min_points, mixup, rate and "
                               f"paste_images; not {unknown}")
            paste = ObjectSample(self.gt_database(), **args)
        ds = CMTDataset(frames, training, hp.point_cloud_range, hp.image_size, hp.resize_lim, hp.sweeps,
                        hp.modalities, hp.modal_mask, None, hp.rot_range, hp.scale_range, hp.translation_std,
                        hp.flip, hp.min_points, hp.seed, paste)
        return ds, source

    def check_model(self, model: CMT) -> None:
        """Raise a `ZooError` naming every pipeline setting that differs from what ``model`` expects: the point
        cloud range, the modalities, the image size (models with cameras) and the sweeps (models with LiDAR)."""
        hp = self.hparams
        settings = [("point_cloud_range", list(model.pc_range), [float(v) for v in hp.point_cloud_range]),
                    ("modalities", sorted(model.modalities), sorted(hp.modalities))]
        if "camera" in model.modalities:
            settings.append(("image_size", model.input_spec["image_size"], list(hp.image_size)))
        if "lidar" in model.modalities:
            settings.append(("sweeps", model.input_spec["sweeps"], hp.sweeps))
        differ = [f"{name} is {mine} for the model but {data} for the data (--data.init_args.{name})"
                  for name, mine, data in settings if mine != data]
        if differ:
            raise ZooError(f"NuScenesDataModule does not match the model: {'; '.join(differ)}. Set the data's "
                           f"options to the model's values (as configs/cmt/*.yaml do)")

    def setup(self, stage: str | None = None) -> None:
        model = getattr(self.trainer.lightning_module, "model", None) if self.trainer is not None else None
        if isinstance(model, CMT):
            self.check_model(model)
        if stage in (None, "fit"):
            self.train_set, _ = self._dataset(self.train_split, True)
            self._base_train_set, self._object_sample = self.train_set, self.train_set.gt_paste
            if self.hparams.cbgs:
                self.train_set = CBGSDataset(self.train_set, len(CLASSES), self.hparams.seed)
        if stage in (None, "fit") and self.hparams.val_data is None and holds_one_split(self.hparams.data) and (
                self.trainer is None or self.trainer.limit_val_batches != 0):
            raise ZooError(f"data {self.hparams.data} holds one split (an info pickle or a catalogue dataset), so "
                           f"validating while fitting would score the training frames; give the validation "
                           f"frames as --data.init_args.val_data (e.g. nuscenes_infos_val.pkl), or turn "
                           f"validation off with --trainer.limit_val_batches 0")
        if stage in (None, "fit", "validate"):
            self.val_set, self.eval_source = self._dataset(self.val_split, False)

    def _paste_phase(self) -> None:
        """GT-paste on before ``gt_paste.epochs`` (if set), off from then on: called as each loader is built."""
        stop = (self.hparams.gt_paste or {}).get("epochs")
        if stop is None or self.trainer is None:
            return
        reload = self.trainer.reload_dataloaders_every_n_epochs
        if not reload or stop % reload:
            raise ZooError(f"gt_paste.epochs {stop} needs the loader rebuilt at epoch {stop}: set "
                           f"trainer.reload_dataloaders_every_n_epochs to {stop} (or a divisor of it), not {reload}")
        self._base_train_set.gt_paste = self._object_sample if self.trainer.current_epoch < stop else None

    def train_dataloader(self):
        self._paste_phase()
        hp = self.hparams
        data, sampler = seeded_training(self.train_set, hp.seed, hp.batch_size)
        return DataLoader(data, hp.batch_size, sampler=sampler, collate_fn=collate, num_workers=hp.num_workers,
                          persistent_workers=hp.num_workers > 0, drop_last=len(self.train_set) > hp.batch_size,
                          worker_init_fn=ignore_foreign_sigterm)

    def val_dataloader(self):
        hp = self.hparams
        return DataLoader(self.val_set, hp.batch_size, collate_fn=collate, num_workers=hp.num_workers,
                          persistent_workers=hp.num_workers > 0, worker_init_fn=ignore_foreign_sigterm)

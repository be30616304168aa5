"""Supervised contrastive training (Khosla et al. 2020), the paper's "KNN+" backbone.

The backbone is trained with the SupCon loss on a projection of its penultimate features; a linear classifier
is trained at the same time on *detached* features (so it never shapes the representation), which gives the
ID accuracy and the logits MSP/energy need, in place of the separate linear-probe stage the authors ran.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from ...registry import create_model
from ...training.optim import build_optimizer, param_groups, warmup_cosine, warmup_steps


def supcon_loss(z: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1,
                base_temperature: float = 0.07) -> torch.Tensor:
    """SupCon loss (the "L_out" form of Khosla et al., eq. 2).

    Args:
        z: [B, V, P] L2-normalised projections of V views of B images.
        labels: [B] class ids.
    Returns:
        scalar: mean over the B*V anchors of -(1/|P(i)|) sum_{p in P(i)} log softmax_{a != i}(z_i . z_a / t)_p,
        scaled by ``temperature / base_temperature`` as in the reference implementation.
    """
    b, v, _ = z.shape
    feats = z.transpose(0, 1).reshape(b * v, -1)  # view-major, as the reference code concatenates views
    y = labels.repeat(v)
    logits = feats @ feats.T / temperature
    self_mask = torch.eye(b * v, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (y[:, None] == y[None, :]) & ~self_mask
    mean_log_prob_pos = log_prob.masked_fill(~positives, 0.0).sum(1) / positives.sum(1).clamp_min(1)
    return -(temperature / base_temperature) * mean_log_prob_pos.mean()


class SupConModule(pl.LightningModule):
    """SupCon pre-training of a zoo backbone with a joint linear probe.

    Expects training batches ``(views [B, 2, C, H, W], labels [B])`` (data ``augment: contrastive``) and plain
    ``(images, labels)`` for validation and test.

    Args:
        model, model_args: the backbone (registry name and arguments).
        projection_dim: output of the 2-layer MLP head (paper/SupContrast: D -> D -> 128).
        temperature, base_temperature: SupCon temperatures (SupContrast CIFAR recipe: 0.1, 0.07).
        lr, momentum, weight_decay, warmup_epochs: SGD with warm-up + cosine (SupContrast: 0.5, 0.9, 1e-4).
        probe_lr: learning rate of the detached linear classifier.
    """

    def __init__(self, model: str = "knn_ood_resnet18", model_args: dict[str, Any] | None = None,
                 projection_dim: int = 128,
                 temperature: float = 0.1, base_temperature: float = 0.07, lr: float = 0.5, momentum: float = 0.9,
                 weight_decay: float = 1e-4, warmup_epochs: float = 0.0, probe_lr: float = 0.1):
        super().__init__()
        self.save_hyperparameters()
        self.model = create_model(model, **(model_args or {}))
        d = self.model.num_features
        self.projection = nn.Sequential(nn.Linear(d, d), nn.ReLU(inplace=True), nn.Linear(d, projection_dim))

    @property
    def input_spec(self) -> dict:
        return self.model.input_spec

    def training_step(self, batch, batch_idx):
        views, y = batch
        b, v = views.shape[:2]
        f = self.model.forward_features(views.flatten(0, 1))  # [B*V, D], image-major
        z = F.normalize(self.projection(f), dim=1).view(b, v, -1)
        loss_con = supcon_loss(z, y, self.hparams.temperature, self.hparams.base_temperature)
        logits = self.model.forward_head(f.detach())
        loss_probe = F.cross_entropy(logits, y.repeat_interleave(v))
        self.log_dict({"train/supcon": loss_con, "train/probe_loss": loss_probe}, prog_bar=True,
                      on_step=True, on_epoch=True, batch_size=b)
        return loss_con + loss_probe

    def _eval(self, batch, stage: str):
        x, y = batch
        acc = (self.model(x).argmax(1) == y).float().mean()
        self.log(f"{stage}/acc", acc, prog_bar=True, on_epoch=True, batch_size=len(y), sync_dist=True)

    def validation_step(self, batch, batch_idx):
        self._eval(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval(batch, "test")

    def configure_optimizers(self):
        hp = self.hparams
        head = list(self.model.get_classifier().parameters())
        head_ids = {id(p) for p in head}
        body = param_groups(self.model, hp.weight_decay)
        for g in body:
            g["params"] = [p for p in g["params"] if id(p) not in head_ids]
        groups = body + param_groups(self.projection, hp.weight_decay) + [{"params": head, "lr": hp.probe_lr,
                                                                             "weight_decay": 0.0}]
        opt = build_optimizer(groups, "sgd", hp.lr, hp.weight_decay, hp.momentum)
        total = self.trainer.estimated_stepping_batches
        sched = warmup_cosine(opt, total, warmup_steps(self.trainer, hp.warmup_epochs))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

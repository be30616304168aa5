"""`ClassifierModule`: cross-entropy training of any registered classifier (the kNN-OOD "KNN" backbone, fine-
tuning heads, DOORPING evaluation networks...)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from ..data.labels import num_outputs
from ..errors import ZooError
from ..registry import create_model
from .optim import build_optimizer, param_groups, warmup_cosine, warmup_steps


def record_classes(model, datamodule, name: str) -> None:
    """Before fitting, record the class names of ``datamodule`` (its ``classes``, which its labels index) in the
    model's config (``zoo_cfg["classes"]``, saved with the model), so that evaluation matches class folders to the
    outputs by name; data with more classes than the model (``name``) has outputs is a `ZooError` before training."""
    classes = getattr(datamodule, "classes", None)
    if not classes:
        return
    outputs = num_outputs(model)
    if outputs is not None and len(classes) > outputs:
        raise ZooError(f"the data has {len(classes)} classes but {name} has {outputs} outputs: set "
                       f"model_args.num_classes to {len(classes)}")
    model.zoo_cfg = {**model.zoo_cfg, "classes": list(classes)}


class ClassifierModule(pl.LightningModule):
    """Cross-entropy classification around a zoo model.

    Args:
        model: registry name (``knn_ood_resnet18``; ``name.tag`` with ``pretrained`` to fine-tune).
        model_args: constructor arguments (``num_classes``, ...).
        pretrained: as `zoo.create_model`.
        optimizer: ``sgd`` | ``adamw`` | ``adam``; lr, momentum, weight_decay, nesterov: its settings.
        warmup_epochs: linear warm-up before the per-step cosine decay.
        label_smoothing: cross-entropy label smoothing.
    """

    def __init__(self, model: str = "knn_ood_resnet18", model_args: dict[str, Any] | None = None,
                 pretrained: bool | str = False, optimizer: str = "sgd", lr: float = 0.1, momentum: float = 0.9,
                 weight_decay: float = 5e-4, nesterov: bool = False, warmup_epochs: float = 0.0,
                 label_smoothing: float = 0.0):
        super().__init__()
        self.save_hyperparameters()
        self.model = create_model(model, pretrained=pretrained, **(model_args or {}))

    @property
    def input_spec(self) -> dict:
        return self.model.input_spec

    def setup(self, stage: str) -> None:
        if stage == "fit":
            record_classes(self.model, self.trainer.datamodule, self.hparams.model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        logits = self.model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing if stage == "train" else 0.0)
        acc = (logits.argmax(1) == y).float().mean()
        self.log_dict({f"{stage}/loss": loss, f"{stage}/acc": acc}, prog_bar=True,
                      on_epoch=True, on_step=stage == "train", batch_size=len(y), sync_dist=stage != "train")
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def predict_step(self, batch, batch_idx):
        return self.model(batch[0]).softmax(1)

    def configure_optimizers(self):
        hp = self.hparams
        opt = build_optimizer(param_groups(self.model, hp.weight_decay), hp.optimizer, hp.lr, hp.weight_decay,
                              hp.momentum, nesterov=hp.nesterov)
        total = self.trainer.estimated_stepping_batches
        sched = warmup_cosine(opt, total, warmup_steps(self.trainer, hp.warmup_epochs))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

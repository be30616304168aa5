"""Fine-tuning a pre-trained (MAE or TinyMIM) encoder for classification, MAE's recipe.

The classifier is a `TinyMIMViT` with global average pooling of the patch tokens and ``fc_norm`` (the encoder's
final ``norm`` is not used). Pre-trained weights are loaded with `load_encoder`: the position embedding becomes
learnable and is resampled when the grid differs, the head is re-initialised (truncated normal, std 2e-5). The
optimiser is AdamW with layer-wise learning-rate decay; the loss is soft-target cross-entropy over mixup/cutmix
mixes with label smoothing (plain label-smoothed cross-entropy when both are off).
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from ...checkpoint import WEIGHTS_NAME, load_state_dict, read_weights
from ...errors import ZooError, require
from ...registry import create_model
from ...training.classification import record_classes
from .model import local_source
from .optim import absolute_lr, adamw_warmup_cosine, layer_decay_groups


def encoder_weights(source: str) -> dict:
    """The state dict of a zoo folder, a ``.safetensors`` file or a manifest ``name.tag``."""
    path = local_source(source, "pretrained encoder", weights_file=True)
    if path is not None:
        return read_weights(path / WEIGHTS_NAME if path.is_dir() else path)
    from ...hub import fetch
    from ...registry import resolve_entry

    key, _ = resolve_entry(source, True)
    return read_weights(fetch(key))


def load_encoder(model, state_dict: dict, source: str = "encoder") -> None:
    """Load pre-trained encoder weights into a classifier ``model`` (a `TinyMIMViT`).

    The encoder's final ``norm`` is dropped when the classifier pools with ``fc_norm``; ``fc_norm`` and a head of
    another size are left to their initialisation; the position embedding is resampled to the model's grid.
    Every other key must match (`zoo.checkpoint.load_state_dict` names the ones that do not).
    """
    from timm.layers import resample_abs_pos_embed

    sd = dict(state_dict)
    own = model.state_dict()
    for k in ("head.weight", "head.bias"):
        if k in sd and (k not in own or sd[k].shape != own[k].shape):
            del sd[k]
    pos = sd.get("pos_embed")
    if pos is not None and pos.shape != own["pos_embed"].shape:
        old = int(round((pos.shape[1] - 1) ** 0.5))
        sd["pos_embed"] = resample_abs_pos_embed(pos, new_size=list(model.patch_embed.grid_size),
                                                 old_size=[old, old], num_prefix_tokens=1)
    load_state_dict(model, sd, allow_missing=("head.*", "fc_norm.*"), allow_unexpected=("norm.*",),
                    source=source)


class FineTuneModule(pl.LightningModule):
    """Supervised fine-tuning of a zoo ViT. Batches: ``(images [B, C, H, W], labels [B])``.

    Args:
        model, model_args: the classifier (e.g. ``tinymim_vit_tiny`` with ``num_classes``, ``drop_path_rate``;
            ``global_pool: avg`` by default).
        pretrained_encoder: zoo folder, ``.safetensors`` or ``name.tag`` of the pre-trained encoder (None:
            train from scratch).
        lr, blr: absolute learning rate, or base rate x effective batch / 256 (MAE ViT-B: blr 5e-4).
        layer_decay: layer-wise learning-rate decay (TinyMIM ViT-B: 0.65).
        weight_decay, warmup_epochs, min_lr: AdamW and the warm-up + cosine schedule (0.05, 5, 1e-6).
        mixup, cutmix, mixup_prob, switch_prob: timm `Mixup` settings (0.8, 1.0, 1.0, 0.5); 0 disables each.
        label_smoothing: 0.1.
        head_init_std: std of the re-initialised head when loading an encoder (MAE: 2e-5).
    """

    def __init__(self, model: str = "tinymim_vit_tiny", model_args: dict[str, Any] | None = None,
                 pretrained_encoder: str | None = None, lr: float | None = None, blr: float = 5e-4,
                 layer_decay: float = 0.75, weight_decay: float = 0.05, warmup_epochs: float = 5,
                 min_lr: float = 1e-6, mixup: float = 0.8, cutmix: float = 1.0, mixup_prob: float = 1.0,
                 switch_prob: float = 0.5, label_smoothing: float = 0.1, head_init_std: float = 2e-5):
        super().__init__()
        if not 0 < layer_decay <= 1:
            raise ZooError(f"layer_decay must be in (0, 1], got {layer_decay}")
        self.save_hyperparameters()
        self.model = create_model(model, **(model_args or {}))
        if self.model.num_classes <= 0:
            raise ZooError("fine-tuning needs a classifier: set model_args.num_classes (e.g. 10 for CIFAR-10)")
        if pretrained_encoder:
            load_encoder(self.model, encoder_weights(pretrained_encoder), source=pretrained_encoder)
            torch.nn.init.trunc_normal_(self.model.head.weight, std=head_init_std)
            torch.nn.init.zeros_(self.model.head.bias)
        self.mixup_fn = None
        if mixup > 0 or cutmix > 0:
            timm_data = require("timm.data", "tinymim", package="timm")
            self.mixup_fn = timm_data.Mixup(mixup_alpha=mixup, cutmix_alpha=cutmix, prob=mixup_prob,
                                            switch_prob=switch_prob, label_smoothing=label_smoothing,
                                            num_classes=self.model.num_classes)

    def setup(self, stage: str) -> None:
        if stage == "fit":
            record_classes(self.model, self.trainer.datamodule, self.hparams.model)

    @property
    def input_spec(self) -> dict:
        return self.model.input_spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        if self.mixup_fn is not None:
            if len(x) % 2:  # timm's batch mixing pairs each image with its mirror in the batch
                x, y = x[:-1], y[:-1]
            if len(x) < 2:  # a last batch of one image: nothing to mix it with, so no step (None skips it)
                return None
            x, soft = self.mixup_fn(x, y)
            loss = torch.sum(-soft * F.log_softmax(self.model(x).float(), dim=-1), dim=-1).mean()
        else:
            loss = F.cross_entropy(self.model(x).float(), y, label_smoothing=self.hparams.label_smoothing)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(x))
        return loss

    def _eval(self, batch, stage: str):
        x, y = batch
        logits = self.model(x)
        self.log_dict({f"{stage}/loss": F.cross_entropy(logits.float(), y),
                       f"{stage}/acc": (logits.argmax(1) == y).float().mean()},
                      prog_bar=True, on_epoch=True, batch_size=len(y), sync_dist=True)

    def validation_step(self, batch, batch_idx):
        self._eval(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval(batch, "test")

    def configure_optimizers(self):
        hp = self.hparams
        groups = layer_decay_groups(self.model, hp.weight_decay, hp.layer_decay)
        return adamw_warmup_cosine(self, groups, absolute_lr(self, hp.lr, hp.blr), hp.warmup_epochs, hp.min_lr,
                                   (0.9, 0.999))

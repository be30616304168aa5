"""The MAE/TinyMIM optimisation recipe: AdamW, ``lr = blr * effective batch / 256``, per-step linear warm-up then
half-cycle cosine to ``min_lr``, and BEiT-style layer-wise learning-rate decay for fine-tuning."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from ...errors import ZooError
from ...training.optim import warmup_cosine, warmup_steps


def absolute_lr(module: pl.LightningModule, lr: float | None, blr: float) -> float:
    """``lr`` if given, else ``blr * batch_size * accumulate_grad_batches * world_size / 256`` (MAE's rule)."""
    if lr is not None:
        return lr
    trainer = module.trainer
    batch = getattr(getattr(trainer, "datamodule", None), "hparams", {}).get("batch_size")
    if batch is None:
        raise ZooError("cannot derive the learning rate from blr: the datamodule has no batch_size; set lr instead")
    return blr * batch * trainer.accumulate_grad_batches * trainer.world_size / 256


def layer_id(name: str, num_layers: int) -> int:
    """Depth index of a ViT parameter: 0 for the embeddings, ``i + 1`` for block ``i``, ``num_layers`` for the
    final norm and the head (BEiT / MAE ``get_layer_id_for_vit``)."""
    if name in ("cls_token", "pos_embed") or name.startswith("patch_embed"):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return num_layers


def layer_decay_groups(model: torch.nn.Module, weight_decay: float, layer_decay: float) -> list[dict]:
    """AdamW groups with ``lr_scale = layer_decay ** (num_layers - layer_id)``; no weight decay on 1-D
    parameters and on ``model.no_weight_decay()`` names (position embedding, class token)."""
    num_layers = len(model.blocks) + 1
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    groups: dict[tuple, dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = 0.0 if (p.ndim == 1 or name in skip) else weight_decay
        lid = layer_id(name, num_layers)
        group = groups.setdefault((lid, decay), {"params": [], "weight_decay": decay,
                                                 "lr_scale": layer_decay ** (num_layers - lid)})
        group["params"].append(p)
    return list(groups.values())


def adamw_warmup_cosine(module: pl.LightningModule, groups: list[dict], lr: float, warmup_epochs: float,
                        min_lr: float, betas) -> dict:
    """Lightning's ``configure_optimizers`` answer: AdamW over ``groups`` (each at ``lr * lr_scale``) with a
    per-step warm-up + cosine schedule down to ``min_lr * lr_scale``."""
    for g in groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
    opt = torch.optim.AdamW(groups, lr=lr, betas=tuple(betas))
    trainer = module.trainer
    sched = warmup_cosine(opt, trainer.estimated_stepping_batches, warmup_steps(trainer, warmup_epochs),
                          min_ratio=min_lr / lr)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

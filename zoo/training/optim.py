"""Optimiser and schedule helpers shared by the LightningModules."""

from __future__ import annotations

import math

import torch

from ..errors import ZooError


def param_groups(module: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weights with decay; biases and norm parameters (ndim <= 1) without."""
    decay, no_decay = [], []
    for p in module.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(params, name: str, lr: float, weight_decay: float = 0.0, momentum: float = 0.9,
                    betas=(0.9, 0.999), nesterov: bool = False) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay)
    raise ZooError(f"unknown optimizer {name!r}; choose sgd, adamw or adam")


def warmup_steps(trainer, warmup_epochs: float) -> int:
    """Optimiser steps in ``warmup_epochs`` epochs of ``trainer``'s training data (fractions allowed), at most the
    run's total. Counted from the batches of one epoch, so it holds however the run is bounded (``max_epochs`` or
    ``max_steps``); where an epoch has no length (an iterable dataset) the run's total is taken as one epoch."""
    total = trainer.estimated_stepping_batches
    if trainer.train_dataloader is None:  # with max_epochs -1 Lightning estimates from max_steps alone
        trainer.fit_loop.setup_data()
    per_epoch = trainer.num_training_batches
    if math.isinf(per_epoch):
        return min(total, int(warmup_epochs * total))
    per_epoch = math.ceil(per_epoch / trainer.accumulate_grad_batches)
    return min(total, int(warmup_epochs * per_epoch))


def warmup_cosine(optimizer, total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.0):
    """Per-step LambdaLR: linear warm-up to the base LR, then half-cycle cosine down to ``min_ratio`` x base."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

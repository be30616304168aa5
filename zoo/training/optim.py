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


def warmup_cosine(optimizer, total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.0):
    """Per-step LambdaLR: linear warm-up to the base LR, then half-cycle cosine down to ``min_ratio`` x base."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

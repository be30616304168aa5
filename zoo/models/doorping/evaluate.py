"""Evaluation of a distilled set: train fresh networks on it, then measure CTA and ASR on a test set.

The protocol of DOORPING's (and DC's) code: SGD with momentum 0.9 and weight decay 5e-4, lr 0.01, batch 256,
``epochs`` epochs (300) with the learning rate divided by 10 for the epochs after ``epochs // 2`` (the optimiser is
re-created then, as in the authors' code, which trains one extra epoch: ``range(Epoch + 1)``). With DSA each batch
is augmented (one family per batch, parameters per image), as for DSA and DM sets in the DC code.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...cuda_graph import capture
from ...metrics.backdoor import attack_success_rate, clean_accuracy
from .attack import stamp
from .augment import DSA


def _cross_entropy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(net(x), y)


@functools.cache
def _compiled_cross_entropy():
    return torch.compile(_cross_entropy)


def cross_entropy_fn(compile: bool):
    """``(net, x [N, C, H, W], y [N]) -> mean cross-entropy``, eager or under ``torch.compile``. The compiled one is
    built once per process and takes the network as a graph input, so every fresh network of the same
    architecture reuses its compiled forward and backward (no recompilation)."""
    return _compiled_cross_entropy() if compile else _cross_entropy


def train_network(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, epochs: int = 300,
                  lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 5e-4, batch_size: int = 256,
                  lr_decay: bool = True, dsa: DSA | None = None, compile: bool = False, cuda_graph: bool = False,
                  progress=None) -> nn.Module:
    """Train ``net`` (in place) on ``images`` [N, C, H, W] / ``labels`` [N] (same device as ``net``).

    Also DC's inner loop (plain SGD: ``momentum=0, weight_decay=0, lr_decay=False``). ``compile``: run the
    forward and backward through ``torch.compile`` (fused element-wise work around the convolutions; the first call
    compiles, about a minute on a CPU). ``cuda_graph``: where every epoch is one whole batch (N <= ``batch_size``),
    without augmentation or learning-rate decay (DC's inner loop at up to 25 images per class), on a CUDA device,
    replay the training steps from one CUDA graph (`_graphed_full_batch_steps`); otherwise ignored."""
    net.train()
    images, labels = images.detach(), labels.detach()
    if (cuda_graph and images.is_cuda and len(images) <= batch_size and dsa is None and not lr_decay
            and progress is None):
        opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
        _graphed_full_batch_steps(net, opt, images, labels, epochs)
        return net.eval()
    loss_fn = cross_entropy_fn(compile)

    def make(rate):
        return torch.optim.SGD(net.parameters(), lr=rate, momentum=momentum, weight_decay=weight_decay)

    opt = make(lr)
    for ep in progress(range(epochs)) if progress else range(epochs):
        if lr_decay and ep == epochs // 2 + 1:
            opt = make(lr * 0.1)
        for idx in torch.randperm(len(images), device=images.device).split(batch_size):
            x = images[idx]
            if dsa is not None:
                x = dsa.random(x)
            loss = loss_fn(net, x, labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval()


def _graphed_full_batch_steps(net: nn.Module, opt: torch.optim.Optimizer, images: torch.Tensor,
                              labels: torch.Tensor, steps: int, warmup: int = 3) -> None:
    """``steps`` optimiser steps on the whole batch images [N, C, H, W] / labels [N] (CUDA): the first ``warmup``
    eagerly on a side stream (they settle the allocator, cuDNN's choices and the optimiser state), the rest replayed
    from one captured step (forward, backward, optimiser step: one launch per step instead of some fifty).
    The eager loop's shuffling only reorders a full batch, which changes nothing but floating-point summation
    order, so it is left out."""
    def step():
        opt.zero_grad(set_to_none=True)  # so a captured backward writes fresh gradients (no accumulation)
        _cross_entropy(net, images, labels).backward()
        opt.step()

    if steps > warmup:
        graph, _ = capture(step, warmup)
        for _ in range(steps - warmup):
            graph.replay()
    else:
        for _ in range(steps):
            step()
    opt.zero_grad(set_to_none=True)


@torch.no_grad()
def predict(net: nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Arg-max predictions [N] of ``net`` on ``images`` [N, C, H, W] (moved batch by batch to the net's device)."""
    device = next(net.parameters()).device
    net.eval()
    return torch.cat([net(x.to(device)).argmax(1).cpu() for x in images.split(batch_size)])


def backdoor_metrics(net: nn.Module, test_images: torch.Tensor, test_labels: torch.Tensor, trigger: torch.Tensor,
                     mask: torch.Tensor, target: int, batch_size: int = 500) -> dict:
    """CTA on clean images and ASR (without and with target-class images) on triggered images, for one network.

    Args:
        test_images: [N, C, H, W] normalised; test_labels: [N]; trigger: [C, H, W]; mask: [1, H, W].
    """
    clean = predict(net, test_images, batch_size).numpy()
    triggered = torch.cat([predict(net, stamp(x, trigger, mask), batch_size) for x in test_images.split(batch_size)])
    return backdoor_scores(clean, triggered.numpy(), test_labels.numpy(), target)


def backdoor_scores(clean, triggered, labels, target: int) -> dict:
    """``cta``, ``asr`` and ``asr_incl_target`` of one network from its predictions [N] on the clean and the
    triggered test images and the true labels [N] (arrays or tensors)."""
    return {"cta": clean_accuracy(clean, labels), "asr": attack_success_rate(triggered, labels, target),
            "asr_incl_target": attack_success_rate(triggered, labels, target, include_target=True)}


def summarise(per_model: list[dict]) -> dict:
    """Mean and standard deviation (population, as numpy's default in the authors' code) over networks."""
    out = {}
    for k in ("cta", "asr", "asr_incl_target"):
        v = np.array([m[k] for m in per_model])
        out[k], out[f"{k}_std"] = float(v.mean()), float(v.std())
    return out

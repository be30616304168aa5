"""``zoo bench`` for TinyMIM ViTs: synthetic images from the model's input spec.

* ``infer``: ``model(images)`` (logits of a classifier, pooled features of an encoder).
* ``train``: a classifier's fine-tuning step (cross-entropy); an encoder's TinyMIM step: the relation loss
  between its last block and the same block of a frozen copy of itself standing in for the teacher (a teacher of
  the same size; ``benchmarks/compare_tinymim.py`` times the paper's ViT-B -> ViT-T step).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from ...bench.adapters import BenchAdapter
from .losses import relation_loss


def adapter(model) -> BenchAdapter:
    c, h, w = model.input_spec["input_size"]
    num_classes = model.num_classes
    depth = len(model.blocks)

    def make_batch(b: int, device: torch.device):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(b, c, h, w, generator=g).to(device)
        y = torch.randint(0, max(num_classes, 1), (b,), generator=g).to(device)
        return x, y

    teacher = {}

    def distill_loss(m, batch):
        if "model" not in teacher:
            teacher["model"] = copy.deepcopy(m).eval().requires_grad_(False)
        with torch.no_grad():
            t = teacher["model"].block_qkv(batch[0], depth)
        return relation_loss(t, m.block_qkv(batch[0], depth))["loss"]

    def classify_loss(m, batch):
        return F.cross_entropy(m(batch[0]), batch[1])

    return BenchAdapter(
        make_batch=make_batch,
        forward=lambda m, batch: m(batch[0]),
        loss=classify_loss if num_classes > 0 else distill_loss,
        unit="images",
        optimizer=lambda p: torch.optim.AdamW(p, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05),
        input_desc=f"images [B, {c}, {h}, {w}]" + (f", {num_classes} classes" if num_classes > 0 else
                                                  "; train = relation distillation from a frozen copy"),
    )

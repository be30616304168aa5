"""``zoo bench`` adapter: images of K = 4 crops, scored as the paper's inference does; the PMT training loss.

One sample is one image: ``infer`` runs `PMTIQA.predict` on [B, 4, 3, 224, 224] (all B * 4 crops in one batch),
``train`` one Adam step on the multi-task loss over the B * 4 crops (mid-schedule weights 0.5 / 0.5). The
ImageNet classifier form of the backbone is benchmarked as an image classifier.
"""

from __future__ import annotations

import torch

from ...bench.adapters import BenchAdapter, image_classifier
from .losses import pmt_loss
from .model import PMTIQA

CROPS = 4


def adapter(model) -> BenchAdapter:
    if not isinstance(model, PMTIQA):
        return image_classifier(model)
    c, h, w = model.input_spec["input_size"]

    def make_batch(b: int, device: torch.device):
        g = torch.Generator().manual_seed(0)
        crops = torch.randn(b, CROPS, c, h, w, generator=g)
        score = torch.rand(b, generator=g)
        level = torch.randint(0, model.num_levels, (b,), generator=g)
        return crops.to(device), score.to(device), level.to(device)

    def loss(m, batch):
        crops, score, level = batch
        out = m(crops.flatten(0, 1))
        return pmt_loss(out, score.repeat_interleave(CROPS), level.repeat_interleave(CROPS), 0.5, 0.5)["loss"]

    return BenchAdapter(
        make_batch=make_batch,
        forward=lambda m, batch: m.predict(batch[0]),
        loss=loss,
        unit="images",
        extra_units={"crops": CROPS},
        optimizer=lambda p: torch.optim.Adam(p, lr=1.0933e-4, weight_decay=5e-4),
        input_desc=f"images of {CROPS} crops [B, {CROPS}, {c}, {h}, {w}], scores in [0, 1], "
                   f"{model.num_levels} quality levels",
    )

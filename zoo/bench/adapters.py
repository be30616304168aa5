"""How the harness feeds a model: synthetic inputs from its input spec, the forward call, the real loss.

A paper's ``bench`` entry returns a `BenchAdapter` for a model of that paper, so ``zoo bench`` needs no dataset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F


@dataclass
class BenchAdapter:
    """Attributes:
        make_batch: ``(batch_size, device) -> batch`` of synthetic inputs shaped like real data.
        forward: ``(model, batch) -> output`` for ``infer`` mode.
        loss: ``(model, batch) -> scalar`` the model's training loss, for ``train`` mode (None: not trainable).
        generate: ``(model, batch) -> output`` for ``generate`` mode (None: not generative).
        unit: what one sample is called in throughput (``images``, ``sequences``, ``frames``).
        extra_units: ``{name: count per sample}``, e.g. ``{"tokens": 512}``, reported as ``<name>_per_s``.
        optimizer: ``(params) -> Optimizer`` for ``train`` mode.
        input_desc: a short description of the synthetic input, recorded in the result.
    """

    make_batch: Callable[[int, torch.device], Any]
    forward: Callable[[torch.nn.Module, Any], Any]
    loss: Callable[[torch.nn.Module, Any], torch.Tensor] | None = None
    generate: Callable[[torch.nn.Module, Any], Any] | None = None
    unit: str = "samples"
    extra_units: dict[str, float] = field(default_factory=dict)
    optimizer: Callable[[Any], torch.optim.Optimizer] = lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9)
    input_desc: str = ""


def image_classifier(model) -> BenchAdapter:
    """Random images of ``model.input_spec["input_size"]`` and labels; cross-entropy loss."""
    c, h, w = model.input_spec["input_size"]
    num_classes = model.get_classifier().out_features if hasattr(model, "get_classifier") else 10

    def make_batch(b: int, device: torch.device):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(b, c, h, w, generator=g).to(device)
        y = torch.randint(0, num_classes, (b,), generator=g).to(device)
        return x, y

    return BenchAdapter(
        make_batch=make_batch,
        forward=lambda m, batch: m(batch[0]),
        loss=lambda m, batch: F.cross_entropy(m(batch[0]), batch[1]),
        unit="images",
        input_desc=f"images [B, {c}, {h}, {w}], {num_classes} classes",
    )

"""zoo.training.optim: the warm-up + cosine schedule's factors and the weight-decay parameter groups."""

import math

import pytest
import torch
from torch import nn

from zoo.errors import ZooError
from zoo.training.optim import build_optimizer, param_groups, warmup_cosine, warmup_steps


def test_warmup_cosine_factors_at_the_landmarks():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=2.0)
    sched = warmup_cosine(opt, total_steps=12, warmup_steps=4, min_ratio=0.1)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(16):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    factors = [lr / 2.0 for lr in lrs]
    assert factors[:5] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])  # linear warm-up, the base LR at its end
    assert factors[8] == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the cosine
    assert factors[6] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 2 / 8)))
    assert factors[12] == pytest.approx(0.1) and factors[16] == pytest.approx(0.1)  # the floor, held after the end
    assert all(a >= b for a, b in zip(factors[3:], factors[4:]))  # never rises after the warm-up
    no_warmup = warmup_cosine(torch.optim.SGD([p], lr=1.0), total_steps=10)
    assert [no_warmup.lr_lambdas[0](s) for s in (0, 5, 10)] == pytest.approx([1.0, 0.5, 0.0])


def test_param_groups_exempt_biases_and_norms_from_weight_decay():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LayerNorm(4), nn.Linear(4, 2),
                      nn.Embedding(5, 4))
    m[0].bias.requires_grad_(False)  # frozen parameters are left out
    decay, no_decay = param_groups(m, weight_decay=0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(m[0].weight), id(m[4].weight), id(m[5].weight)}
    assert {id(p) for p in no_decay["params"]} == {id(m[1].weight), id(m[1].bias), id(m[3].weight), id(m[3].bias),
                                                    id(m[4].bias)}
    opt = build_optimizer(param_groups(m, 0.05), "adamw", lr=1e-3, weight_decay=0.05)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]  # the groups' decay wins
    with pytest.raises(ZooError, match="unknown optimizer"):
        build_optimizer(m.parameters(), "lion", lr=1e-3)


@pytest.mark.parametrize("bounds, accumulate, expected", [({"max_epochs": 4}, 1, 32), ({"max_steps": 10}, 1, 10),
                                                          ({"max_steps": 100, "max_epochs": -1}, 1, 32),
                                                          ({"max_epochs": 4}, 4, 8)])
def test_warmup_steps_count_epochs_of_batches_however_the_run_is_bounded(bounds, accumulate, expected):
    """64 batches per epoch (BoringModel's), 0.5 epochs of warm-up: 32 optimiser steps (8 with 4 accumulated
    batches a step), never more than the run's total."""
    import pytorch_lightning as pl
    from pytorch_lightning.demos.boring_classes import BoringModel

    seen = {}

    class Probe(BoringModel):
        def configure_optimizers(self):
            seen["warmup"] = warmup_steps(self.trainer, 0.5)
            return super().configure_optimizers()

    pl.Trainer(**bounds, accumulate_grad_batches=accumulate, limit_val_batches=0, logger=False,
               enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False).fit(Probe())
    assert seen["warmup"] == expected

"""`EpochShuffle`: the training order of every zoo DataModule that shuffles, a function of (seed, epoch) alone.

A loader's own ``generator`` (or torch's global one, which ``seed_everything`` resets) starts afresh each time a
run starts, so a run resumed from a checkpoint after epoch k drew epoch 0's order again for epoch k. Lightning
calls ``set_epoch(epoch)`` on a training loader's sampler before every epoch, with the epoch restored from the
checkpoint after a resume (`pytorch_lightning.loops.fit_loop._FitLoop.on_advance_start`), so an order drawn from
(seed, epoch) is the same in an uninterrupted and a resumed run.

Only the order: random augmentation in the datasets (crops, flips, ...) draws from torch's generator of each
process or worker, which is not carried across a resume.

Under DDP Lightning (``use_distributed_sampler``, its default) replaces a `RandomSampler`, this subclass
included, by a shuffling ``DistributedSampler`` with its own seed and ``set_epoch``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

import numpy as np
import torch
from torch.utils.data import RandomSampler


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit generator seed mixed from ``seed`` and ``epoch`` (``seed + epoch``, as ``DistributedSampler`` has
    it, would give seed s at epoch e + 1 the order of seed s + 1 at epoch e)."""
    return int(np.random.SeedSequence([seed % 2**64, epoch]).generate_state(1, np.uint64)[0]) >> 1


class EpochShuffle(RandomSampler):
    """A permutation of ``range(len(data_source))`` drawn by a generator seeded from (``seed``, the epoch that
    `set_epoch` last set; 0 before it is called)."""

    def __init__(self, data_source: Sized, seed: int):
        super().__init__(data_source)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        return iter(torch.randperm(len(self.data_source), generator=generator).tolist())

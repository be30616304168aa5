"""`EpochShuffle`: the training order of the zoo's DataModules that shuffle, a function of (seed, epoch) alone (not
PMT-IQA's cached-feature loader nor DOORPING's distillation, which keep the sampling that made their published
files).

A loader's own ``generator`` (or torch's global one, which ``seed_everything`` resets) starts afresh each time a
run starts, so a run resumed from a checkpoint after epoch k drew epoch 0's order again for epoch k. Lightning
calls ``set_epoch(epoch)`` on a training loader's sampler before every epoch, with the epoch restored from the
checkpoint after a resume (`pytorch_lightning.loops.fit_loop._FitLoop.on_advance_start`), so an order drawn from
(seed, epoch) is the same in an uninterrupted and a resumed run.

`train_sampler` builds it for a DataModule, and `ResumeOrder` (a callback `zoo fit` adds) restarts it after a resume:
at the restored epoch, past the batches a mid-epoch checkpoint had finished. Only the order: random augmentation in the datasets (crops, flips, ...) draws from torch's generator of each
process or worker, which is not carried across a resume.

Under DDP Lightning (``use_distributed_sampler``, its default) replaces a `RandomSampler`, this subclass
included, by a shuffling ``DistributedSampler`` with its own seed and ``set_epoch``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import RandomSampler


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit generator seed mixed from ``seed`` and ``epoch`` (``seed + epoch``, as ``DistributedSampler`` has
    it, would give seed s at epoch e + 1 the order of seed s + 1 at epoch e)."""
    return int(np.random.SeedSequence([seed % 2**64, epoch]).generate_state(1, np.uint64)[0]) >> 1


class EpochShuffle(RandomSampler):
    """A permutation of ``range(len(data_source))`` drawn by a generator seeded from (``seed``, the epoch that
    `set_epoch` last set, or ``epoch`` before it is called). ``skip``: indices to leave out of the first pass only
    (a run resumed in the middle of an epoch continues that epoch's order where it stopped)."""

    def __init__(self, data_source: Sized, seed: int, epoch: int = 0, skip: int = 0):
        super().__init__(data_source)
        self.seed, self.epoch, self.skip = seed, epoch, skip

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        order, self.skip = torch.randperm(len(self.data_source), generator=generator).tolist()[self.skip:], 0
        return iter(order)


def train_sampler(datamodule, dataset: Sized, seed: int, batch_size: int) -> EpochShuffle:
    """The training sampler of a DataModule's loader (``batch_size``: its batch size, by which `ResumeOrder` skips
    the batches a mid-epoch checkpoint had finished)."""
    sampler = EpochShuffle(dataset, seed)
    sampler.batch_size = batch_size
    return sampler


class ResumeOrder(pl.Callback):
    """After a resume, restart the training loader's iterator at the restored epoch's order, past the batches a
    mid-epoch checkpoint (Ctrl-C's ``interrupted.ckpt``) had finished. Needed because Lightning may build the
    loader's first iterator before it restores the checkpoint (``trainer.estimated_stepping_batches`` in
    ``configure_optimizers`` does), and a loader with workers then draws its first indices at once; `zoo fit` adds
    it."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loop = trainer.fit_loop
        if trainer.ckpt_path is None or loop._combined_loader is None:  # not resumed from a checkpoint
            return
        done = loop.epoch_loop.batch_progress.current.completed if loop.restarted_mid_epoch else 0
        restarted = False
        for loader in loop._combined_loader.flattened:
            sampler = getattr(loader, "sampler", None)
            if isinstance(sampler, EpochShuffle):
                sampler.set_epoch(trainer.current_epoch)
                sampler.skip = done * getattr(sampler, "batch_size", loader.batch_size or 1)
                restarted = True
        if restarted:
            iter(loop._data_fetcher)  # a new iterator of the loaders, drawing the orders just set

"""`SeededTraining`: the callback `zoo fit` adds so that a run resumed from any checkpoint (an epoch's
``last.ckpt`` or Ctrl-C's ``interrupted.ckpt`` in the middle of an epoch) goes on exactly as the uninterrupted
run, for the DataModules whose training data are seeded (`zoo.data.sampling.seeded_training`).

Their order and augmentation are already functions of (seed, epoch, index). What is left is the randomness of the
training step itself (dropout, drop-path, MAE's masks, mixup, CMT's modality masking and query denoising), which
drew from the process's generators: their state at a checkpoint depends on everything that ran before it (each
loader's seed draw when an iterator starts, say), and no checkpoint held it. Here each step starts from generators
seeded by (the run's ``seed_everything`` seed, the data's seed, epoch, batch index, rank), as fairseq seeds each
update; and after a resume the training loader restarts at the restored epoch, past the batches a mid-epoch
checkpoint had finished.
"""

from __future__ import annotations

import os

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_warn

from ..data.sampling import EpochShuffle, SeededSamples, mixed_seed, seed_all


class SeededTraining(pl.Callback):
    """Seed every training step of a run whose training loader holds `SeededSamples`, and restart that loader's
    order after a resume. Needed on resume because Lightning may build the loader's first iterator before it
    restores the checkpoint (``trainer.estimated_stepping_batches`` in ``configure_optimizers`` does), and a loader
    with workers then draws its first indices at once. Runs of other loaders are left as they are, and warned of
    after a resume (unless the module's ``resumes_mid_epoch`` says it restores its own randomness)."""

    def __init__(self):
        self.data_seed: int | None = None  # the training data's seed; None: a loader that is not seeded
        self.run_seed = 0  # seed_everything's

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loop = trainer.fit_loop
        loaders = loop._combined_loader.flattened if loop._combined_loader is not None else []
        seeded = [dl for dl in loaders if isinstance(getattr(dl, "dataset", None), SeededSamples)]
        self.data_seed = seeded[0].dataset.seed if seeded else None
        self.run_seed = int(os.environ.get("PL_GLOBAL_SEED", "0"))  # set by seed_everything
        if trainer.ckpt_path is None:  # not resumed from a checkpoint
            return
        done = _batches_done(loop)
        shuffles = [dl.sampler for dl in seeded if isinstance(dl.sampler, EpochShuffle)]
        if len(shuffles) < len(loaders) and not getattr(pl_module, "resumes_mid_epoch", False):
            where = f"in the middle of epoch {trainer.current_epoch} (batch {done})" if done else \
                f"at the start of epoch {trainer.current_epoch}"
            rank_zero_warn(f"resumed {where} with a training loader that is not seeded "
                           f"(zoo.data.sampling.seeded_training): its order and random draws from here on are not "
                           f"the uninterrupted run's{', and the epoch starts afresh' if done else ''}")
        for sampler in shuffles:
            sampler.set_epoch(trainer.current_epoch)
            sampler.skip = done * sampler.batch_size
        if shuffles:
            iter(loop._data_fetcher)  # a new iterator of the loaders, drawing the orders just set

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        if self.data_seed is not None:
            seed_all(mixed_seed(self.run_seed, self.data_seed, trainer.current_epoch, batch_idx, trainer.global_rank))


def _batches_done(loop) -> int:
    """How many of the restored epoch's batches a checkpoint had finished: 0 at an epoch's end; in the middle, its
    completed batches, and the batch under way too when it was saved at that batch's end (``every_n_train_steps``
    or ``train_time_interval``), as Lightning counts it when it restores (`_TrainingEpochLoop.reset`)."""
    epoch_loop = loop.epoch_loop
    completed = epoch_loop.batch_progress.current.completed
    if not hasattr(loop, "restarted_mid_epoch"):  # Lightning 2.4 resumes after the completed batches alone
        return completed if 0 < completed < loop.trainer.num_training_batches else 0
    if not loop.restarted_mid_epoch:
        return 0
    done = completed + int(epoch_loop.restarted_on_train_batch_end)
    return 0 if done >= loop.trainer.num_training_batches else done

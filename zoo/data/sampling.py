"""Seeded training data: each epoch's order drawn from (seed, epoch) (`EpochShuffle`), and each sample's random
augmentation from (seed, epoch, index) (`SeededSamples`), for the zoo's DataModules that shuffle (not PMT-IQA's
cached-feature loader nor DOORPING's distillation, which keep the sampling that made their published files).

A loader's own ``generator`` (or torch's global one, which ``seed_everything`` resets) starts afresh each time a
run starts, so a run resumed from a checkpoint after epoch k drew epoch 0's order again for epoch k; and random
crops and flips drew from each worker's generator, seeded when the worker started and advancing with the samples it
happened to load, which no checkpoint holds. Here neither depends on the process: Lightning calls
``set_epoch(epoch)`` on a training loader's sampler before every epoch, with the epoch restored from the checkpoint
after a resume (`pytorch_lightning.loops.fit_loop._FitLoop.on_advance_start`), and the sampler hands the epoch to
the dataset with each index. So an uninterrupted and a resumed run see the same samples, augmented alike, and so do
runs with 0 and with 8 loader workers. `zoo.training.resume.SeededTraining` (a callback `zoo fit` adds) seeds the
training steps alike and restarts the order after a resume.

Under DDP each rank takes its share of the epoch's order (`EpochShuffle` is a ``DistributedSampler``, which
Lightning keeps), so a sample's augmentation does not depend on the rank that loads it either.

Cost (``python benchmarks/seeded_loading.py``, development CPU, 2026-12-06; the result file in
``benchmarks/results``): 1.08x the time per image of a plain shuffling loader without workers (about 26 us an
image) and 1.00x with two workers, on 32-pixel CIFAR-10 JPEGs with crop and flip, the cheapest images there are, so
the largest share (an earlier run of the same command, not kept, gave 1.10x with two workers: the machine's noise).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sized
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, get_worker_info

MASK64 = 2**64 - 1
_GAMMA, _MUL1, _MUL2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB  # SplitMix64's constants


def _splitmix64(x: int) -> int:
    """One step of Vigna's SplitMix64 (a bijection of 64-bit integers that mixes every input bit into the output)."""
    z = (x + _GAMMA) & MASK64
    z = ((z ^ (z >> 30)) * _MUL1) & MASK64
    z = ((z ^ (z >> 27)) * _MUL2) & MASK64
    return z ^ (z >> 31)


def _splitmix64_array(z: np.ndarray) -> np.ndarray:
    """`_splitmix64` on a uint64 array (NumPy's array products wrap modulo 2**64, as the masks do there)."""
    z = z + np.uint64(_GAMMA)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_MUL1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_MUL2)
    return z ^ (z >> np.uint64(31))


def mixed_seed(*parts: int) -> int:
    """A 63-bit generator seed mixed from the integers ``parts``, about 2 us (``seed + epoch``, as
    ``DistributedSampler`` has it, would give seed s at epoch e + 1 the order of seed s + 1 at epoch e; NumPy's
    ``SeedSequence`` mixes as well but takes 12 us, too long to spend on every sample)."""
    h = len(parts)
    for p in parts:
        h = _splitmix64(h ^ (p & MASK64))
    return h >> 1


def mixed_seed_table(seed: int, keys, steps: int) -> np.ndarray:
    """[len(keys), steps] uint64: ``mixed_seed(seed, key, step)`` for every key and every step below ``steps``, at
    once (a drum prompt's random numbers for a whole generation)."""
    h = np.uint64(_splitmix64(3 ^ (seed & MASK64)))  # mixed_seed's state after the first of its three parts
    h = _splitmix64_array(h ^ np.array([k & MASK64 for k in keys], dtype=np.uint64))
    return _splitmix64_array(h[:, None] ^ np.arange(steps, dtype=np.uint64)[None, :]) >> np.uint64(1)


def seed_cpu(seed: int) -> None:
    """Seed the CPU generators a transform or a training step may draw from: torch's, NumPy's global one (timm's
    mixup draws there) and Python's ``random`` (about 7 us)."""
    torch.default_generator.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def seed_all(seed: int) -> None:
    """`seed_cpu` and every accelerator's generator (``torch.manual_seed``: about 100 us, the CUDA seeding)."""
    torch.manual_seed(seed)
    seed_cpu(seed)


@contextmanager
def kept_generators():
    """In the main process, give the CPU generators of `seed_cpu` their states back after the block, so the
    caller's draws go on as if it had not run (about 85 us on the development CPU, 72 of them NumPy's state). A
    loader worker, whose generators serve its samples only, skips that."""
    if get_worker_info() is not None:
        yield
        return
    states = torch.get_rng_state(), np.random.get_state(), random.getstate()
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])


class SampleKey(NamedTuple):
    """What `EpochShuffle` yields: a dataset ``index`` and the ``epoch`` it is drawn in."""

    epoch: int
    index: int


def _world() -> tuple[int, int]:
    """(number of processes, this one's rank) of the initialised ``torch.distributed`` group, else (1, 0)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


class EpochShuffle(DistributedSampler):
    """A permutation of ``range(len(dataset))`` drawn by a generator seeded from (``seed``, the epoch that
    `set_epoch` last set, or ``epoch`` before it is called), as `SampleKey`s. Under DDP (``num_replicas`` and
    ``rank``: by default those of the initialised process group) rank r takes every ``num_replicas``-th key from the
    r-th, the order padded by its own start to a multiple of ``num_replicas`` as ``DistributedSampler`` pads; being
    one, it is kept by Lightning, which replaces other samplers by its own. ``skip``: keys of this rank to leave out
    of the first pass only (a run resumed in the middle of an epoch continues that epoch's order where it stopped);
    ``batch_size``: the loader's, by which `SeededTraining` sets ``skip`` for the batches a checkpoint had done."""

    def __init__(self, dataset: Sized, seed: int, epoch: int = 0, skip: int = 0, num_replicas: int | None = None,
                 rank: int | None = None, batch_size: int = 1):
        world, own = _world()
        super().__init__(dataset, num_replicas=num_replicas or world, rank=own if rank is None else rank,
                         shuffle=True, seed=seed)
        self.epoch, self.skip, self.batch_size = epoch, skip, batch_size

    def __iter__(self) -> Iterator[SampleKey]:
        generator = torch.Generator().manual_seed(mixed_seed(self.seed, self.epoch))
        order = torch.randperm(len(self.dataset), generator=generator).tolist()
        order += (order * math.ceil(self.total_size / max(len(order), 1)))[:self.total_size - len(order)]
        mine, self.skip = order[self.rank:self.total_size:self.num_replicas][self.skip:], 0
        return (SampleKey(self.epoch, i) for i in mine)


class SeededSamples(Dataset):
    """``dataset`` whose item for a `SampleKey` (epoch, index) is ``dataset[index]`` built with the generators
    seeded from (``seed``, epoch, index): its random augmentation is a function of those three, whichever process
    loads it. A plain index (from a sampler other than `EpochShuffle`) is passed through unseeded."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: SampleKey | int):
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: list[SampleKey | int]) -> list:
        """A batch's items (the DataLoader fetches a batch through this when it exists): the generators' states
        are kept once per batch, not per sample. Seeding adds about 10 us a sample in a worker."""
        if not any(isinstance(k, SampleKey) for k in keys):
            return [self.dataset[k] for k in keys]
        with kept_generators():
            return [self._seeded_item(k) for k in keys]

    def _seeded_item(self, key: SampleKey | int):
        if isinstance(key, SampleKey):
            seed_cpu(mixed_seed(self.seed, key.epoch, key.index))
            key = key.index
        return self.dataset[key]


def seeded_training(dataset: Dataset, seed: int, batch_size: int) -> tuple[SeededSamples, EpochShuffle]:
    """The dataset and sampler of a DataModule's training loader of ``batch_size``."""
    return SeededSamples(dataset, seed), EpochShuffle(dataset, seed, batch_size=batch_size)

"""What seeding each training sample costs: one epoch of a CIFAR-10 training loader (the kNN-OOD recipes' data:
32-pixel JPEGs, random crop and flip), with the zoo's `SeededSamples` + `EpochShuffle` (each sample's augmentation
drawn from generators seeded by (seed, epoch, index)) against a plain ``shuffle=True`` loader over the same
dataset, for each number of loader workers, timed in turn. The images are decoded and augmented per sample, so this
is the case where the seeding's fixed cost per sample weighs most.

    python benchmarks/seeded_loading.py [--images 5000] [--workers 0 2] [--iters 3]
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.data import DataLoader

from zoo.bench.compare import save, timeit_alternating
from zoo.data.classification import ImageClassificationDataModule
from zoo.data.sampling import seeded_training

SPEC = {"input_size": [3, 32, 32], "mean": [0.4914, 0.4822, 0.4465], "std": [0.247, 0.2435, 0.2616]}


def epoch(loader: DataLoader) -> None:
    for _ in loader:
        pass


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="cifar10_jpeg", help="an image-classification folder or catalogue name")
    p.add_argument("--images", type=int, default=5000, help="train_subset of the DataModule (a tenth of it is held out for validation)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--iters", type=int, default=3, help="timed epochs per loader")
    a = p.parse_args()
    torch.set_num_threads(1)
    dm = ImageClassificationDataModule(data=a.data, batch_size=a.batch, train_subset=a.images, input_spec=SPEC)
    dm.setup("fit")
    plain = dm.train_set
    n = len(plain)
    rows = []
    for workers in a.workers:
        seeded, sampler = seeded_training(plain, seed=0, batch_size=a.batch)
        kw = {"batch_size": a.batch, "num_workers": workers, "persistent_workers": workers > 0}
        loaders = {"plain": DataLoader(plain, shuffle=True, **kw), "seeded": DataLoader(seeded, sampler=sampler, **kw)}
        t = timeit_alternating({name: lambda dl=dl: epoch(dl) for name, dl in loaders.items()}, warmup=1,
                               iters=a.iters)
        us = {name: t[name]["p50"] * 1e3 / n for name in loaders}
        rows.append({"workers": workers, "plain_us_per_image": us["plain"], "seeded_us_per_image": us["seeded"],
                     "seeded_over_plain": us["seeded"] / us["plain"]})
        print(rows[-1], flush=True)
    summary = (f"One epoch of {n} CIFAR-10 training images (random crop + flip, batch {a.batch}), median of "
               f"{a.iters} epochs per loader, loaders timed in turn; one torch thread per process.")
    path = save("seeded_loading", {"description": "Training-loader time per image: plain shuffle vs the zoo's "
                                                  "per-sample seeding (SeededSamples + EpochShuffle).",
                                   "rows": rows, "summary": summary})
    print(summary, "\nwrote", path)


if __name__ == "__main__":
    main()

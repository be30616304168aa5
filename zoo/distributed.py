"""Sharded evaluation under ``torchrun`` (or a DDP process group): each rank reads its `DistributedSampler` shard,
and results are all-gathered back into dataset order, so every rank ends with the same full arrays.

Lightning's strategies own distributed *training*; this covers inference-time loops (feature banks, ``zoo eval``).
"""

from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as dist
from torch.utils.data.distributed import DistributedSampler


def init_from_env() -> bool:
    """Join the process group that ``torchrun`` describes (WORLD_SIZE > 1); True when running distributed."""
    if dist.is_available() and dist.is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    return True


@contextlib.contextmanager
def from_env():
    """`init_from_env` for a block: yields whether it runs distributed; a process group it created is left cleanly
    at the end (a barrier, then ``destroy_process_group``; after an error without the barrier), so that no rank
    exits while gloo's threads of another still talk to it."""
    owned = not (dist.is_available() and dist.is_initialized())
    sharded = init_from_env()
    try:
        yield sharded
    except BaseException:
        if sharded and owned:
            dist.destroy_process_group()
        raise
    if sharded and owned:
        dist.barrier()
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def all_gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Concatenate ``t`` [n_rank, ...] from every rank (n_rank may differ) along dim 0, in rank order."""
    world = dist.get_world_size()
    n = torch.tensor([t.shape[0]], device=t.device)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    top = int(max(s.item() for s in sizes))
    padded = torch.zeros((top, *t.shape[1:]), dtype=t.dtype, device=t.device)
    padded[: t.shape[0]] = t
    out = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(out, padded)
    return torch.cat([o[: int(s.item())] for o, s in zip(out, sizes)])


def gather_in_order(tensors: list[torch.Tensor], sampler) -> list[torch.Tensor]:
    """Tensors whose rows follow this rank's ``sampler`` order -> the whole dataset's rows in dataset order.

    A `DistributedSampler` pads the dataset to a multiple of the world size by repeating indices; repeated rows
    collapse onto one position. Without a distributed sampler (or process group) the tensors come back as is.
    """
    if not (active() and isinstance(sampler, DistributedSampler)):
        return tensors
    if sampler.shuffle:
        raise ValueError("gathering in dataset order needs a DistributedSampler with shuffle=False")
    device = tensors[0].device
    idx = all_gather_cat(torch.tensor(list(iter(sampler)), device=device))
    gathered = [all_gather_cat(t) for t in tensors]
    order = torch.full((len(sampler.dataset),), -1, dtype=torch.long, device=device)
    order[idx] = torch.arange(len(idx), device=device)
    return [g[order] for g in gathered]

"""Feature extraction for OOD scoring, single-process or sharded across a torch.distributed group.

Under DDP (or ``torchrun``) each rank reads its `DistributedSampler` shard; `extract` all-gathers features,
logits, labels and dataset indices, drops the sampler's padding duplicates and returns the whole dataset in
dataset order on every rank, so the kNN bank is identical everywhere.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from .scorers import Features


def _all_gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Concatenate ``t`` [n_rank, ...] from every rank (n_rank may differ) along dim 0."""
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


@torch.inference_mode()
def extract(model, loader: DataLoader, device: torch.device | str = "cpu", amp_dtype: torch.dtype | None = None,
            progress=None) -> Features:
    """Penultimate features, logits and labels of every sample ``loader`` yields.

    Args:
        model: a backbone with ``forward_features`` and ``forward_head`` (see `model.py`).
        loader: yields ``(images [B, C, H, W], labels [B])``; under torch.distributed give it a
            non-shuffling `DistributedSampler`.
        amp_dtype: autocast dtype (``torch.bfloat16``) or None for full precision.
        progress: optional callable wrapping the iterable (a progress bar).
    Returns:
        `Features` with ``features`` [N, D], ``logits`` [N, C], ``labels`` [N], on the CPU, in dataset order.
    """
    device = torch.device(device)
    model.eval().to(device)
    feats, logits, labels = [], [], []
    batches = progress(loader) if progress else loader
    for x, y in batches:
        x = x.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            f = model.forward_features(x)
            z = model.forward_head(f)
        feats.append(f.float())
        logits.append(z.float())
        labels.append(torch.as_tensor(y).to(device))
    out = Features(torch.cat(feats), torch.cat(logits), torch.cat(labels).long())
    sampler = loader.sampler
    if isinstance(sampler, DistributedSampler) and dist.is_available() and dist.is_initialized():
        if sampler.shuffle:
            raise ValueError("feature extraction needs a DistributedSampler with shuffle=False")
        idx = torch.tensor(list(iter(sampler)), device=device)
        idx, f, z, y = (_all_gather_cat(t) for t in (idx, out.features, out.logits, out.labels))
        order = torch.full((len(sampler.dataset),), -1, dtype=torch.long, device=device)
        order[idx] = torch.arange(len(idx), device=device)  # padding duplicates collapse onto one position
        out = Features(f[order], z[order], y[order])
    return Features(out.features.cpu(), out.logits.cpu(), out.labels.cpu())

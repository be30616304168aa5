"""Feature extraction for OOD scoring, single-process or sharded across a torch.distributed group.

Under DDP (or ``torchrun``) each rank reads its `DistributedSampler` shard; `extract` all-gathers features,
logits, labels and dataset indices, drops the sampler's padding duplicates and returns the whole dataset in
dataset order on every rank, so the kNN bank is identical everywhere.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from ...distributed import gather_in_order
from .scorers import Features


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
        `Features` with ``features`` [N, D], ``logits`` [N, C], ``labels`` [N], in dataset order, on ``device``:
        scorers fitted on them keep their state (the kNN bank, the Mahalanobis statistics) where scoring runs, so
        a GPU evaluation searches the bank on the GPU.
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
    f, z, y = gather_in_order([torch.cat(feats), torch.cat(logits), torch.cat(labels).long()], loader.sampler)
    return Features(f, z, y)

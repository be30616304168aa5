"""The devices the zoo runs on, as users name them (``--device``, ``device=``)."""

from __future__ import annotations

import torch

from .errors import ZooError


def torch_device(name) -> torch.device:
    """The torch device ``name`` (``cpu``, ``cuda``, ``cuda:N``, ``mps``), or a `ZooError` saying which there are."""
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda", "mps"):
        raise ZooError(f"device {name!r} is not one this zoo runs on: use cpu, cuda (the current GPU), cuda:N "
                       f"(GPU N) or mps (Apple silicon)")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ZooError("--device cuda given but no CUDA device is available")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise ZooError(f"--device {name} given but this machine has {torch.cuda.device_count()} CUDA devices "
                       f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ZooError("--device mps given but no MPS device is available")
    return dev

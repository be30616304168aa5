"""The precision names the CLI and the benchmark share (Lightning's), and the autocast dtype of each."""

from __future__ import annotations

import torch

from .errors import ZooError

PRECISIONS = {"32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The ``torch.autocast`` dtype of ``precision`` (None: float32, no autocast)."""
    if precision not in PRECISIONS:
        raise ZooError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
    return PRECISIONS[precision]

"""The precision names the CLI and the benchmark share (Lightning's), and the autocast dtype of each. Imports no
torch until a dtype is asked for, so the CLI can offer the names cheaply."""

from __future__ import annotations

from .errors import ZooError

PRECISIONS = ("32", "bf16-mixed", "16-mixed")


def autocast_dtype(precision: str):
    """The ``torch.autocast`` dtype of ``precision`` (None: float32, no autocast)."""
    import torch

    if precision not in PRECISIONS:
        raise ZooError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
    return {"32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}[precision]

"""What every timing in the zoo shares: waiting for the device, and the statistics of a list of step times."""

from __future__ import annotations

import numpy as np
import torch


def sync(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (a no-op on the CPU, whose work is done when the call returns)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def latency_stats(ms: list[float]) -> dict:
    """Mean, median (p50), p90, p99, min and max of step times ``ms`` (milliseconds), and their count."""
    a = np.asarray(ms)
    return {"mean": float(a.mean()), "p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "min": float(a.min()), "max": float(a.max()), "iters": len(ms)}

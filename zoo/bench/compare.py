"""Shared pieces of the side-by-side comparisons in ``benchmarks/compare_<paper>.py``.

A comparison runs the zoo's path and a plain re-statement of the authors' algorithm on the same inputs in one
process, checks that they agree, times both with `timeit`, and saves one JSON file with `save` (device and
software in its name, the environment and the command inside).
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

import torch

from ..hub import repo_root
from ..io import write_json
from .env import device_slug, environment
from .timing import latency_stats, sync


def timeit(fn, *, device: torch.device | str = "cpu", warmup: int = 3, iters: int = 10) -> dict:
    """Median and percentiles (ms) of ``fn()`` over ``iters`` calls after ``warmup`` calls, device-synchronised."""
    return timeit_alternating({"fn": fn}, device=device, warmup=warmup, iters=iters)["fn"]


def timeit_alternating(fns: dict, *, device: torch.device | str = "cpu", warmup: int = 3, iters: int = 10) -> dict:
    """`timeit` for several paths at once, calling them in turn (A B C A B C ...) so that a change in machine
    load during the run hits every path alike; returns ``{name: stats}``."""
    device = torch.device(device)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    sync(device)
    times = {name: [] for name in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: latency_stats(t) for name, t in times.items()}


def results_dir() -> Path:
    """Where result files go: ``$ZOO_RESULTS_DIR`` when set (the GPU session collects them there), else
    ``benchmarks/results``."""
    return Path(os.environ.get("ZOO_RESULTS_DIR") or repo_root() / "benchmarks" / "results")


def save(name: str, payload: dict, device: torch.device | str = "cpu", out_dir: Path | None = None) -> Path:
    """Write ``compare_<name>__<device>__torch<ver>.json`` (in `results_dir`) with the environment and command."""
    env = environment(torch.device(device))
    out_dir = out_dir or results_dir()
    path = out_dir / f"compare_{name}__{device_slug(env)}__torch{env['torch'].split('+')[0]}.json"
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    write_json(path, {"comparison": name, "command": command, "env": env, **payload})
    return path

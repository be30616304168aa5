"""The environment block recorded with every benchmark result."""

from __future__ import annotations

import functools
import os
import platform
import re
import subprocess

import torch


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def _git_commit() -> str | None:
    """HEAD (``-dirty`` with uncommitted changes), or ``ZOO_GIT_COMMIT`` where the tree has no git (the GPU
    session's copy, see ``benchmarks/gpu``). Read once per process, when this module is imported: a benchmark
    records the code it started with, not a commit made while it ran."""
    from ..hub import repo_root

    if os.environ.get("ZOO_GIT_COMMIT"):
        return os.environ["ZOO_GIT_COMMIT"]
    try:
        out = subprocess.run(["git", "-C", str(repo_root()), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        dirty = subprocess.run(["git", "-C", str(repo_root()), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


_git_commit()


def _driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return None


def environment(device: torch.device) -> dict:
    from .. import __version__

    cuda = device.type == "cuda"
    return {
        "device_type": device.type,
        "device_name": torch.cuda.get_device_name(device) if cuda else _cpu_name(),
        "device_count": torch.cuda.device_count() if cuda else os.cpu_count(),
        "driver": _driver() if cuda else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32 if cuda else None,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "zoo": __version__,
        "git_commit": _git_commit(),
    }


def is_gpu(env: dict) -> bool:
    """Whether ``env`` (an `environment` block) was recorded on a GPU (blocks written before ``device_type`` was
    recorded: whether ``nvidia-smi`` answered)."""
    return env["device_type"] == "cuda" if "device_type" in env else bool(env.get("driver"))


def device_slug(env: dict) -> str:
    """A short file-name-safe device name: ``h100-80gb-hbm3``, ``cpu-intel-xeon-...``."""
    name = env["device_name"].lower().replace("nvidia", "").replace("(r)", "").replace("(tm)", "")
    slug = re.sub(r"[^a-z0-9]+", "-", name).strip("-")
    return slug if is_gpu(env) else f"cpu-{slug}"[:48].rstrip("-")

"""Peak dense throughput per accelerator and dtype, each row with its source; a measured peak otherwise.

Values are dense (not 2:4-sparse) tensor-core peaks from NVIDIA's datasheets, in TFLOP/s: the datasheets
quote sparse figures for BF16/FP16/TF32, halved here. ``fp32`` is the
non-tensor-core FP32 peak (used when TF32 matmuls are off). Rows are matched against
``torch.cuda.get_device_name()`` in order; the first matching substring wins.
"""

from __future__ import annotations

import time

import torch

from .timing import sync

_H100 = "NVIDIA H100 Tensor Core GPU datasheet"
_H200 = "NVIDIA H200 Tensor Core GPU datasheet"
_A100 = "NVIDIA A100 Tensor Core GPU datasheet"
_L40S = "NVIDIA L40S GPU datasheet"

# (name substring, {dtype: TFLOP/s}, source); dtypes: bf16, fp16, tf32, fp32
PEAKS: list[tuple[str, dict[str, float], str]] = [
    ("H200 NVL", {"bf16": 835.5, "fp16": 835.5, "tf32": 417.5, "fp32": 60.0}, f"{_H200}, H200 NVL, dense"),
    ("H200", {"bf16": 989.5, "fp16": 989.5, "tf32": 494.5, "fp32": 67.0}, f"{_H200}, H200 SXM, dense"),
    ("H100 NVL", {"bf16": 835.5, "fp16": 835.5, "tf32": 417.5, "fp32": 60.0}, f"{_H100}, H100 NVL, dense"),
    ("H100 PCIe", {"bf16": 756.5, "fp16": 756.5, "tf32": 378.0, "fp32": 51.0}, f"{_H100}, H100 PCIe, dense"),
    ("H100", {"bf16": 989.5, "fp16": 989.5, "tf32": 494.5, "fp32": 67.0}, f"{_H100}, H100 SXM, dense"),
    ("A100", {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5}, f"{_A100}, dense"),
    ("L40S", {"bf16": 362.05, "fp16": 362.05, "tf32": 183.0, "fp32": 91.6}, f"{_L40S}, dense"),
]


def precision_dtype(precision: str, device: torch.device) -> str:
    """The matmul dtype a run uses: ``bf16``/``fp16`` under autocast; ``tf32`` or ``fp32`` for precision 32."""
    if precision == "bf16-mixed":
        return "bf16"
    if precision == "16-mixed":
        return "fp16"
    if device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return "fp32"


def table_peak(device_name: str, dtype: str) -> tuple[float, str] | None:
    """(TFLOP/s, source) for a device name from the table, or None when the device is not in it."""
    for key, peaks, source in PEAKS:
        if key.lower() in device_name.lower():
            return peaks[dtype], source
    return None


def measured_peak(device: torch.device, dtype: str, seconds: float = 0.5) -> tuple[float, str]:
    """Matrix-multiply throughput measured now, in TFLOP/s: the best of repeated ``n x n`` matmuls, with ``n``
    doubled from 256 until one product takes 20 ms or n reaches 4096 (slow dtypes, e.g. bf16 or fp16 on CPUs
    without native support, stay small). ``dtype`` is the run's (`precision_dtype`), measured in that dtype so
    that MFU is against the peak of the arithmetic the run did (fp16 on a CPU included)."""
    tdt = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(dtype, torch.float32)

    def once(a, b) -> float:
        sync(device)
        t0 = time.perf_counter()
        a @ b
        sync(device)
        return time.perf_counter() - t0

    n = 256
    while True:
        a = torch.randn(n, n, device=device, dtype=tdt)
        b = torch.randn(n, n, device=device, dtype=tdt)
        once(a, b)
        if n >= 4096 or min(once(a, b) for _ in range(3)) >= 0.02:
            break
        n *= 2
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        best = min(best, once(a, b))
    tflops = 2 * n**3 / best / 1e12
    return tflops, f"measured: best torch.matmul {n}x{n} {str(tdt).replace('torch.', '')} in this run"


def peak_for(device: torch.device, precision: str) -> tuple[float, str, str]:
    """(peak TFLOP/s, source, dtype) for MFU: the table for known GPUs, a measured matmul peak otherwise."""
    dtype = precision_dtype(precision, device)
    if device.type == "cuda":
        hit = table_peak(torch.cuda.get_device_name(device), dtype)
        if hit:
            return hit[0], hit[1], dtype
    tflops, source = measured_peak(device, dtype)
    return tflops, source, dtype

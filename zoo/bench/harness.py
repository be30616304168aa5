"""`benchmark`: time one model in one mode, the same way for every model.

What is timed: one *step* = ``infer`` (forward under ``torch.inference_mode``), ``train`` (zero_grad, forward,
the model's real loss, backward, optimiser step) or ``generate`` (the model's generation call). Inputs are
synthetic, built from the model's own input specification, and created on the device before timing.
After ``warmup`` untimed steps, ``iters`` steps are timed one by one: with CUDA events on a GPU (device time,
no host gaps counted), with ``time.perf_counter`` on a CPU. Throughput = batch size / median step time.
FLOPs are counted once, on one real step, by ``torch.utils.flop_counter.FlopCounterMode`` (an FMA = 2 FLOPs).
Attention runs through the kernel the timed step used and is counted as the math kernel's matmuls would be
(`_attention_flops`): torch has no formula for the CPU's fused kernel, and the math kernel itself would keep every
attention matrix for the backward pass (a CMT R50 fusion train step: 13.7 GB resident instead of 6.0).
MFU = achieved FLOP/s / peak FLOP/s from `zoo.bench.peaks` (a measured matmul peak on CPUs and unknown GPUs).
Precision ``32`` on a GPU is one policy for matmuls and convolutions: TF32 only when the user turned it on for
matmuls (``torch.set_float32_matmul_precision('high')``); cuDNN's own TF32 default for convolutions is switched
off for the run, so an fp32 result is fp32 and its MFU is against the fp32 peak.
``--compile`` compiles the model first; the compile time (the first call) is reported apart.
An out-of-memory batch size halves and retries, and the result says so.
"""

from __future__ import annotations

import copy
import math
import os
import resource
import time
from contextlib import contextmanager, nullcontext

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..devices import torch_device
from ..errors import ZooError
from ..precision import autocast_dtype
from ..registry import load_object, paper_of
from .adapters import BenchAdapter
from .env import environment
from .peaks import peak_for
from .timing import latency_stats, sync

MODES = ("infer", "train", "generate")


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and ("out of memory" in str(exc) or "can't allocate memory" in str(exc)))


def with_backoff(run, batch_size: int):
    """Call ``run(batch_size)``, halving the batch size after each out-of-memory error.

    Returns:
        (result of the successful call, the batch size that worked, [batch sizes that ran out of memory]).
    """
    failed = []
    while batch_size >= 1:
        try:
            return run(batch_size), batch_size, failed
        except Exception as exc:  # noqa: BLE001 - only OOM is retried
            if not is_oom(exc):
                raise
            failed.append(batch_size)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            batch_size //= 2
    raise ZooError(f"out of memory even at batch size 1 (tried {failed})")


def load_bench_model(source: str, model_args: dict | None = None):
    """Folder -> from_pretrained; ``name.tag`` -> pretrained weights; bare name -> random init, built with
    ``model_args`` (constructor keywords; only for a bare name)."""
    from pathlib import Path

    from ..checkpoint import from_pretrained
    from ..registry import create_model, split_name

    if Path(source).is_dir() or "/" in source or split_name(source)[1]:
        if model_args:
            raise ZooError(f"model_args apply to a bare model name, not to the saved weights of {source}")
        return from_pretrained(source)
    return create_model(source, **(model_args or {}))


def adapter_for(model) -> BenchAdapter:
    paper = paper_of(model.zoo_cfg["architecture"])
    if not paper.bench:
        raise ZooError(f"paper {paper.id} declares no benchmark adapter")
    return load_object(paper.bench)(model)


def _conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                         _output_padding, _groups, output_mask, out_shape=None, **kwargs) -> int:
    """FLOPs of ``aten.convolution_backward``: each requested gradient (input, weight) costs one forward.

    torch's default formula counts the weight gradient of a grouped (depthwise) convolution as if it were dense,
    which inflates the training FLOPs of depthwise networks (EfficientNet, ConvNeXt) many times over.
    ``w_shape`` is ``[C_out, C_in / groups, *kernel]`` (transposed: ``[C_in, C_out / groups, *kernel]``); the
    forward costs ``2 * N * prod(w_shape) * prod(spatial)`` with ``spatial`` the output size (transposed: input).
    """
    spatial = x_shape[2:] if transposed else grad_out_shape[2:]
    forward = 2 * grad_out_shape[0] * math.prod(w_shape) * math.prod(spatial)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


def _make_step(model, adapter: BenchAdapter, mode: str, amp, device, scaler):
    autocast = (lambda: torch.autocast(device.type, dtype=amp)) if amp is not None else nullcontext
    if mode == "infer":
        def step(batch):
            with torch.inference_mode(), autocast():
                return adapter.forward(model, batch)
    elif mode == "generate":
        if adapter.generate is None:
            raise ZooError(f"{model.zoo_cfg['architecture']} has no generate mode")

        def step(batch):
            with torch.inference_mode(), autocast():
                return adapter.generate(model, batch)
    else:
        if adapter.loss is None:
            raise ZooError(f"{model.zoo_cfg['architecture']} has no train mode")
        opt = adapter.optimizer([p for p in model.parameters() if p.requires_grad])

        def step(batch):
            opt.zero_grad(set_to_none=True)
            with autocast():
                loss = adapter.loss(model, batch)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            return loss
    return step


def _reset_cpu_peak() -> bool:
    """Reset the process's peak resident set (Linux: ``VmHWM``, via ``/proc/self/clear_refs``); False where the
    kernel does not allow it (then the peak is the process's since it started)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _cpu_peak_mb() -> float:
    """The process's peak resident set in MiB: ``VmHWM`` where /proc has it, else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024


def _time_steps(step, batch, n: int, device) -> list[float]:
    times = []
    if device.type == "cuda":
        for _ in range(n):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step(batch)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    else:
        for _ in range(n):
            t0 = time.perf_counter()
            step(batch)
            times.append((time.perf_counter() - t0) * 1e3)
    return times


@contextmanager
def tf32_policy(device: torch.device):
    """cuDNN convolutions follow the matmul TF32 switch for the run (see the module docstring); restored after."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = saved


def _attention_flops(query_shape, key_shape, value_shape, *_args, out_shape=None, **_kwargs) -> int:
    """FLOPs of a fused attention forward: Q K^T and P V, ``2 * b * h_q * s_q * s_k * (d_qk + d_v)``.

    Shapes are [b, h, s, d]; key and value may have fewer heads (grouped-query attention). Causal masking is not
    discounted, as the math kernel computes the whole score matrix."""
    b, h_q, s_q, d_qk = query_shape
    return 2 * b * h_q * s_q * key_shape[2] * (d_qk + value_shape[3])


def _attention_backward_flops(_grad_out_shape, query_shape, key_shape, value_shape, *_args, out_shape=None,
                              **_kwargs) -> int:
    """FLOPs of a fused attention backward: the gradients of both products (four matmuls, twice the forward), as
    the math kernel's autograd counts them; the fused kernels' recomputation of Q K^T is not counted."""
    return 2 * _attention_flops(query_shape, key_shape, value_shape)


_ATTENTION_KERNELS = [k for k in ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention",
                                   "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention")
                      if hasattr(torch.ops.aten, k)]  # those this torch has (the GPU machine runs an older one)
_FLOP_FORMULAS = {torch.ops.aten.convolution_backward: _conv_backward_flops,
                  **{getattr(torch.ops.aten, k): _attention_flops for k in _ATTENTION_KERNELS},
                  **{getattr(torch.ops.aten, k + "_backward"): _attention_backward_flops for k in _ATTENTION_KERNELS}}


def count_flops(step, batch) -> int:
    """FLOPs of one call of ``step(batch)`` (an FMA = 2), with `_FLOP_FORMULAS` over torch's own."""
    with FlopCounterMode(display=False, custom_mapping=_FLOP_FORMULAS) as counter:
        step(batch)
    return counter.get_total_flops()


def _check_arguments(source, model, mode, batch_size, warmup, iters, compile, channels_last) -> None:
    """One ZooError for the first bad argument of `benchmark`, naming it and what to pass (the CLI's argtypes
    allow the same: ``--batch-size``, ``--warmup`` and ``--iters`` are `zoo.argtypes.positive_int`)."""
    if mode not in MODES:
        raise ZooError(f"unknown mode {mode!r}; choose {', '.join(MODES)}")
    for flag, value in (("compile", compile), ("channels_last", channels_last)):
        if not isinstance(value, bool):
            raise ZooError(f"{flag} must be True or False, not {value!r}")
    first_step = " (the first step, which compiles and backs off out of memory, is always an untimed warm-up)"
    for arg, value, why in (("batch_size", batch_size, ""), ("warmup", warmup, first_step), ("iters", iters, "")):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ZooError(f"{arg} must be a whole number >= 1{why}, not {value!r}")
    if model is None and not isinstance(source, str):
        got = "neither" if source is None else f"source={type(source).__name__}"
        hint = " (pass a model object as model=)" if isinstance(source, torch.nn.Module) else ""
        raise ZooError(f"benchmark needs a model name, name.tag or saved-model folder as source, or a zoo model as "
                       f"model=; got {got}{hint}")
    if model is not None and not isinstance(getattr(model, "zoo_cfg", None), dict):
        raise ZooError(f"model= must be a zoo model, made by zoo.create_model or zoo.from_pretrained (its zoo_cfg "
                       f"names the architecture, whose benchmark adapter builds the inputs); got a "
                       f"{type(model).__name__} without zoo_cfg")


def benchmark(source: str | os.PathLike | None = None, *, model=None, mode: str = "infer", device: str = "cpu",
              precision: str = "32", batch_size: int = 32, compile: bool = False, warmup: int = 5, iters: int = 20,
              channels_last: bool = False, model_args: dict | None = None) -> dict:
    """Benchmark one model; returns the result dict (see the module docstring for what is measured).

    The model is ``source`` (a name, ``name.tag`` or saved-model folder, `load_bench_model`) or ``model``, a zoo
    model (``source`` then only names it in the result). A ``model`` passed in is benchmarked as a copy
    (``copy.deepcopy``): its weights, buffers, train/eval mode, device and memory format are left as they were.
    ``model_args``: constructor keywords for a bare model name. ``batch_size``, ``warmup`` and ``iters`` are whole
    numbers >= 1; ``compile`` and ``channels_last`` are True or False. Bad arguments are refused before any work.
    """
    if isinstance(source, os.PathLike):  # a saved-model folder as a Path
        source = os.fspath(source)
    _check_arguments(source, model, mode, batch_size, warmup, iters, compile, channels_last)
    amp = autocast_dtype(precision)
    dev = torch_device(device)
    model = copy.deepcopy(model) if model is not None else load_bench_model(source, model_args)
    name = source or model.zoo_cfg["architecture"]
    adapter = adapter_for(model)
    model.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    model.train(mode == "train")
    scaler = torch.amp.GradScaler(dev.type) if (mode == "train" and amp == torch.float16) else None
    runner = torch.compile(model) if compile else model
    step = _make_step(runner, adapter, mode, amp, dev, scaler)
    flop_step = _make_step(model, adapter, mode, amp, dev, scaler)
    timing = {}

    def run(bs: int):
        batch = adapter.make_batch(bs, dev)
        t0 = time.perf_counter()
        step(batch)
        sync(dev)
        timing["first_s"] = time.perf_counter() - t0
        for _ in range(warmup - 1):
            step(batch)
        sync(dev)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        else:
            timing["rss_reset"] = _reset_cpu_peak()
        return batch, _time_steps(step, batch, iters, dev)

    with tf32_policy(dev):
        (batch, times), bs, failed = with_backoff(run, batch_size)
        peak_mem = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else _cpu_peak_mb()
        flops = count_flops(flop_step, batch)
        tf32_conv = torch.backends.cudnn.allow_tf32 if dev.type == "cuda" else None  # as tf32_policy set it
    lat = latency_stats(times)
    step_s = lat["p50"] / 1e3
    peak_tflops, peak_source, peak_dtype = peak_for(dev, precision)
    achieved = flops / step_s / 1e12
    result = {
        "model": name,
        "architecture": model.zoo_cfg["architecture"],
        "mode": mode,
        "device": dev.type,
        "precision": precision,
        "batch_size": bs,
        "requested_batch_size": batch_size,
        "oom_backoff": failed,
        "samples_per_s": bs / step_s,
        "unit": adapter.unit,
        f"{adapter.unit}_per_s": bs / step_s,
        **{f"{k}_per_s": v * bs / step_s for k, v in adapter.extra_units.items()},
        "latency_ms": lat,
        "peak_mem_mb": peak_mem,
        "peak_mem_kind": ("torch.cuda.max_memory_allocated" if dev.type == "cuda" else
                          "process peak RSS over the timed steps (VmHWM reset before them)" if timing["rss_reset"]
                          else "process peak RSS since it started (ru_maxrss)"),
        "params": sum(p.numel() for p in model.parameters()),
        "flops_per_sample": flops / bs,
        "tflops": achieved,
        "mfu": achieved / peak_tflops,
        "peak_tflops": peak_tflops,
        "peak_dtype": peak_dtype,
        "peak_source": peak_source,
        "compile": compile,
        "compile_s": timing["first_s"] if compile else None,
        "channels_last": channels_last,
        "tf32_conv": tf32_conv,
        "warmup": warmup,
        "iters": iters,
        "input": adapter.input_desc,
        "model_args": model_args or {},
        "env": environment(dev),
    }
    return result


def format_result(r: dict) -> str:
    lat = r["latency_ms"]
    note = f" (OOM at {r['oom_backoff']}, backed off)" if r["oom_backoff"] else ""
    extra = "".join(f", {r[k]:.1f} {k[:-6]}/s" for k in r if k.endswith("_per_s") and k not in
                    ("samples_per_s", f"{r['unit']}_per_s"))
    comp = f"; compile {r['compile_s']:.1f} s" if r["compile"] else ""
    return (f"{r['model']} {r['mode']} {r['device']} {r['precision']} batch {r['batch_size']}{note}: "
            f"{r['samples_per_s']:.1f} {r['unit']}/s{extra}; latency ms mean {lat['mean']:.2f} p50 {lat['p50']:.2f} "
            f"p90 {lat['p90']:.2f} p99 {lat['p99']:.2f}; peak mem {r['peak_mem_mb']:.0f} MB; "
            f"{r['params'] / 1e6:.2f} M params; {r['flops_per_sample'] / 1e9:.3f} GFLOP/sample; "
            f"{r['tflops']:.3f} TFLOP/s = MFU {100 * r['mfu']:.1f} % of {r['peak_tflops']:.3g} ({r['peak_source']})"
            f"{comp}")

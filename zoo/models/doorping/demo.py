"""DOORPING quick start for ``zoo demo``: a DC + DOORPING distillation step through the CLI, the backdoor
evaluation of a distilled set, and a benchmark of the distillation network."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ...data import synthetic
from ...data.catalog import available
from ...hub import load_manifest, repo_root

PUBLISHED = "doorping_distilled.fashion_mnist_dc_convnet_ipc10_doorping"


def _trigger_at_top(path: Path) -> bool:
    """Whether every pixel of a distilled set's trigger patch is at the top of the valid range (raw 1.0), where
    DOORPING's steps, pushing the unit up, are clamped: then the trigger cannot move."""
    import torch

    from .attack import pixel_bounds
    from .synset import load_distilled

    s = load_distilled(path)
    top = pixel_bounds(s.mean, s.std)[1].expand_as(s.trigger)
    inside = s.trigger_mask.expand_as(s.trigger) > 0
    return bool(torch.isclose(s.trigger[inside], top[inside]).all())


def run(workdir: Path) -> list[dict]:
    from ...bench.harness import benchmark
    from ...eval import evaluate
    from ...training.cli import ZooLightningCLI

    rows = []
    real = available("fashion_mnist")
    data = "fashion_mnist" if real else str(synthetic.shapes(n_train=40, n_test=20))
    desc = "Fashion-MNIST" if real else "generated shapes (no ../shared data)"

    t0 = time.perf_counter()
    cli = ZooLightningCLI(run=False, args=[
        "--config", str(repo_root() / "configs/doorping/dc_cpu.yaml"), "--data.init_args.data", data,
        "--model.init_args.ipc", "1", "--model.init_args.batch_real", "8", "--model.init_args.trigger_steps", "5",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(workdir / "fit")])
    cli.trainer.fit(cli.model, cli.datamodule)
    log = json.loads((workdir / "fit" / "distilled_trigger_log.json").read_text())[-1]
    result = (f"trigger moved {log['shift']:.2f} in {log['steps']} Adam steps (unit {log['units'][0]} "
              f"{log['activation_start']:.3f} -> {log['activation_end']:.3f})")
    if _trigger_at_top(workdir / "fit" / "distilled.safetensors"):
        result += "; every trigger pixel at the top of the valid range, where the steps push (see the card)"
    rows.append({"step": "distil DC + DOORPING, ipc 1, 1 iteration", "data": desc, "result": result,
                 "seconds": time.perf_counter() - t0})

    t0 = time.perf_counter()
    published = real and PUBLISHED in load_manifest()
    source = PUBLISHED if published else str(workdir / "fit" / "distilled.safetensors")
    r = evaluate(source, "backdoor", data=data, arch=None, models=1, epochs=100, augment="none", lr=0.01,
                 test_subset=200, seed=0, json_out=workdir / "backdoor.json", num_workers=0)
    rows.append({"step": f"backdoor eval of {source if published else 'the fresh set'} (1 net, 100 epochs as the card, "
                         "200 test images)",
                 "data": desc, "result": f"CTA {100 * r['cta']:.1f} %, ASR {100 * r['asr']:.1f} % "
                                         f"(incl. target {100 * r['asr_incl_target']:.1f} %)",
                 "seconds": time.perf_counter() - t0})

    t0 = time.perf_counter()
    b = benchmark("doorping_convnet", mode="train", batch_size=16, warmup=1, iters=3)
    rows.append({"step": "bench doorping_convnet train, batch 16, CPU fp32", "data": "synthetic input",
                 "result": f"{b['samples_per_s']:.0f} images/s, p50 {b['latency_ms']['p50']:.0f} ms",
                 "seconds": time.perf_counter() - t0})
    return rows

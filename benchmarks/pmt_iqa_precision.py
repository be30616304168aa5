"""Where PMT-IQA loses accuracy under low-precision autocast, and what keeping early stages in fp32 buys back.

Two measurements on the same model, images and crop offsets as `compare_pmt_iqa.py` (the BIQ2021 subset's test
split, K seeded 224x224 crops per image):

* ``stages``: the relative L2 error, ``||y_low - y_fp32|| / ||y_fp32||``, of every backbone stage's output under
  bf16 (or fp16) autocast, on the first ``--probe-images`` images: where the error appears and how it grows.
* ``policies``: image scores with the first n entries of the backbone's stages (the stem, then its stages) run in
  fp32 (autocast off for them, the backbone's ``fp32_stages`` setting) and the rest in low precision, for each n
  of ``--fp32-stages``. Reported per policy: the SRCC change against the fp32 model (the goal of issue 5 allows
  0.002), and the mean and largest absolute score change.

    OMP_NUM_THREADS=1 python benchmarks/pmt_iqa_precision.py --device cpu --images 250
    python benchmarks/pmt_iqa_precision.py --device cuda --images 250 --precision fp16
"""

from __future__ import annotations

import argparse

import torch
from compare_pmt_iqa import test_crops

import zoo
from zoo.bench.compare import save
from zoo.metrics.iqa import srcc

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def stages(model) -> list[tuple[str, torch.nn.Module]]:
    """The backbone's layers to probe, in order: (name, module), the stem's convolution and norm first."""
    net = model.backbone.net
    if model.backbone.arch.startswith("efficientnet"):
        return ([("stem", net.conv_stem), ("stem_bn", net.bn1)] + [(f"blocks.{i}", b) for i, b in enumerate(net.blocks)]
                + [("conv_head", net.conv_head), ("head_bn", net.bn2)])
    return ([("stem", net.conv1), ("stem_bn", net.bn1)]
            + [(f"layer{i}", getattr(net, f"layer{i}")) for i in range(1, 5)])


@torch.inference_mode()
def scores(model, crops: torch.Tensor, dtype, batch_images: int) -> torch.Tensor:
    """[N, K, 3, S, S] -> [N] image scores, under ``dtype`` autocast (None: fp32)."""
    out = []
    for s in range(0, len(crops), batch_images):
        with torch.autocast(crops.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out.append(model.predict(crops[s:s + batch_images]).float().cpu())
    return torch.cat(out)


@torch.inference_mode()
def stage_flops(model, size: int) -> list[int]:
    """FLOPs of each entry of ``model.backbone.stages()`` on one crop, and of the rest of the model last."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, size, size, device=next(model.parameters()).device)
    counts = []
    for stage in model.backbone.stages():
        with FlopCounterMode(display=False) as c:
            x = stage(x)
        counts.append(c.get_total_flops())
    with FlopCounterMode(display=False) as c:
        model(torch.zeros(1, 3, size, size, device=x.device))
    counts.append(c.get_total_flops() - sum(counts))
    return counts


@torch.inference_mode()
def stage_errors(model, crops: torch.Tensor, dtype) -> list[dict]:
    """Relative L2 error of each stage's output under ``dtype`` autocast, on crops [N, K, 3, S, S]."""
    outputs: dict[str, list] = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: outputs.setdefault(n, []).append(o.float()))
             for n, m in stages(model)]
    x = crops.flatten(0, 1)
    try:
        model(x)
        with torch.autocast(x.device.type, dtype=dtype):
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return [{"stage": n, "relative_error": float((low - ref).norm() / ref.norm())}
            for n, (ref, low) in outputs.items()]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="pmt_iqa_efficientnet_lite0.biq2021")
    p.add_argument("--data", default="biq2021_subset")
    p.add_argument("--device", default="cpu")
    p.add_argument("--images", type=int, default=250, help="test images to score (the subset has 250)")
    p.add_argument("--crops", type=int, default=4)
    p.add_argument("--batch-images", type=int, default=25)
    p.add_argument("--probe-images", type=int, default=8, help="images for the per-stage errors")
    p.add_argument("--precision", default="bf16", choices=sorted(DTYPES))
    p.add_argument("--fp32-stages", default="1,2,3,4",
                   help="comma list of n: policies with the first n backbone stages in fp32 (1: the stem only)")
    a = p.parse_args()
    device, dtype = torch.device(a.device), DTYPES[a.precision]
    model = zoo.from_pretrained(a.model).eval().to(device)
    crops, mos = test_crops(model, a.data, a.images, a.crops, device)

    errors = stage_errors(model, crops[: a.probe_images], dtype)
    for e in errors:
        print(f"{e['stage']:<10} relative error {e['relative_error']:.4f}")
    ref = scores(model, crops, None, a.batch_images)
    ref_srcc = srcc(ref, mos)
    flops = stage_flops(model, model.input_spec["input_size"][-1])

    def label(n):
        kept = "stem" if n == 1 else "stem + stage 0" if n == 2 else f"stem + stages 0-{n - 2}"
        return f"{kept} fp32, rest {a.precision}"

    rows = []
    for n in [0] + [int(v) for v in a.fp32_stages.split(",")]:
        model.backbone.fp32_stages = n
        pred = scores(model, crops, dtype, a.batch_images)
        change = (pred - ref).abs()
        rows.append({"policy": label(n) if n else f"all {a.precision}", "fp32_stages": n,
                     "fp32_flop_share": sum(flops[:n]) / sum(flops), "srcc": srcc(pred, mos),
                     "srcc_change": srcc(pred, mos) - ref_srcc, "mean_abs_score_change": float(change.mean()),
                     "max_abs_score_change": float(change.max())})
        r = rows[-1]
        print(f"{r['policy']:<40} fp32 FLOPs {100 * r['fp32_flop_share']:4.1f} %  SRCC change {r['srcc_change']:+.5f}"
              f"  mean |score change| "
              f"{r['mean_abs_score_change']:.4f}  max {r['max_abs_score_change']:.4f}", flush=True)
    model.backbone.fp32_stages = 0
    path = save(f"pmt_iqa_precision_{a.precision}", {
        "description": f"{a.model} on {len(crops)} {a.data} test images x {a.crops} crops: per-stage relative error "
                       f"under {a.precision} autocast (first {a.probe_images} images), and image scores with the "
                       f"stem and first stages in fp32, against the fp32 model (SRCC {ref_srcc:.4f}).",
        "fp32_srcc": ref_srcc, "stages": errors, "rows": rows}, device)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""One TinyMIM distillation step (ViT-B teacher -> ViT-T student, relation loss at the last blocks), zoo vs a plain
re-statement of the authors' step, on the same weights and inputs, in one process.

* **reference** (the authors' ``engine_pretrain.py`` + ``vit.py`` re-stated): explicit attention maps in every
  block (``softmax(q k^T / sqrt(d)) v``), the teacher run through all its blocks and its final norm with the
  relations read at the distillation block, the student stopped at its relation block, ``KLDivLoss(log(s), t)``
  on probabilities, fp16 autocast with a gradient scaler on GPUs.
* **zoo** (`DistillModule` path): the teacher under ``no_grad`` stops at the relation block's Q/K/V; every earlier
  block uses timm's fused attention (``scaled_dot_product_attention``); relations as log-softmax in float32;
  bf16 autocast on GPUs; optionally ``torch.compile``.

Both paths update the student with AdamW. The loss values are compared with the student in eval mode (no
drop-path randomness); throughput is images per second of the whole step. FLOPs are those of the zoo step
(`torch.utils.flop_counter`), MFU against `zoo.bench.peaks` (datasheet peaks on known GPUs, a measured matmul
peak otherwise).

GPU run (the issue's goals: zoo >= 1.5x the reference, MFU >= 40 % of the bf16 peak, losses equal to 1e-3):
    python benchmarks/compare_tinymim.py --device cuda --batch-size 256 --compile
Reduced CPU run (committed from this machine):
    OMP_NUM_THREADS=1 python benchmarks/compare_tinymim.py --device cpu --batch-size 4 --iters 3 --warmup 1
"""

from __future__ import annotations

import argparse
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

import zoo
from zoo.bench.compare import save, timeit
from zoo.bench.harness import with_backoff
from zoo.bench.peaks import peak_for
from zoo.models.tinymim.losses import relation_loss


def build(img_size: int, device: torch.device):
    """A ViT-B/16 teacher (frozen, eval) and a ViT-T/16 student (6 heads, 12-head last block, drop-path 0.1)."""
    enc = dict(img_size=img_size, patch_size=16, num_classes=0, global_pool="token", fixed_pos_embed=True)
    teacher = zoo.create_model("tinymim_vit_base", **enc).to(device).eval().requires_grad_(False)
    student = zoo.create_model("tinymim_vit_tiny", num_heads=6, last_block_heads=12, drop_path_rate=0.1,
                               drop_path_mode="uniform", **enc).to(device)
    return teacher, student


def explicit_block(block, x: torch.Tensor, relation: bool = False, stop: bool = False):
    """One block with an explicit attention map (the authors' ``vit.Block``/``Attention``).

    Returns ``(output or None when ``stop``, (Q-K, V-V) probability maps ``[B, H, N, N]`` when ``relation``)``.
    """
    attn = block.attn
    b, n, c = x.shape
    qkv = attn.qkv(block.norm1(x)).reshape(b, n, 3, attn.num_heads, c // attn.num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    scale = (c // attn.num_heads) ** -0.5
    a = ((q @ k.transpose(-2, -1)) * scale).softmax(-1)
    rel = (a, ((v @ v.transpose(-2, -1)) * scale).softmax(-1)) if relation else None
    if stop:
        return None, rel
    x = x + block.drop_path1(attn.proj((a @ v).transpose(1, 2).reshape(b, n, c)))
    return x + block.drop_path2(block.mlp(block.norm2(x))), rel


def reference_loss(teacher, student, x_t: torch.Tensor, x_s: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        h, depth = teacher.embed(x_t), len(teacher.blocks)
        for i, block in enumerate(teacher.blocks, 1):
            h, t_rel = explicit_block(block, h, relation=i == depth)  # the relations of the last block remain
        teacher.norm(h)  # the teacher runs to its end
    h = student.embed(x_s)
    for block in student.blocks[:-1]:
        h, _ = explicit_block(block, h)
    _, s_rel = explicit_block(student.blocks[-1], h, relation=True, stop=True)
    kl = torch.nn.KLDivLoss(reduction="none")
    return sum(kl(s.log(), t).sum(-1).mean() for s, t in zip(s_rel, t_rel))


def zoo_loss(teacher, student, x_t: torch.Tensor, x_s: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        t = teacher.block_qkv(x_t, len(teacher.blocks))
    return relation_loss(t, student.block_qkv(x_s, len(student.blocks)))["loss"]


def make_step(loss_fn, teacher, student, x_t, x_s, amp, scaler):
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=1e-4, betas=(0.9, 0.95))
    device_type = x_t.device.type

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type, dtype=amp) if amp is not None else nullcontext():
            loss = loss_fn(teacher, student, x_t, x_s)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        return loss

    return step


def loss_value(fn, teacher, student, x_t, x_s, amp) -> float:
    """The loss of one path without drop-path randomness, under its own autocast dtype."""
    student.eval()
    with torch.no_grad(), torch.autocast(x_t.device.type, dtype=amp) if amp is not None else nullcontext():
        value = float(fn(teacher, student, x_t, x_s))
    student.train()
    return value


def measure(a, device: torch.device, batch_size: int) -> tuple[list[dict], str]:
    """Rows (one per path) and a summary for one batch size.

    The two paths' timed steps alternate (one step of each per round, ``a.iters`` rounds after ``a.warmup``), so
    that a shared machine's changing load falls on both alike.
    """
    gpu = device.type == "cuda"
    torch.manual_seed(0)
    teacher, student = build(a.img_size, device)
    g = torch.Generator().manual_seed(0)
    x_t = torch.randn(batch_size, 3, a.img_size, a.img_size, generator=g).to(device)
    x_s = x_t + 0.1 * torch.randn(x_t.shape, generator=g).to(device)  # the student's colour-jittered view
    ref_amp, zoo_amp = (torch.float16, torch.bfloat16) if gpu else (None, None)
    paths = (("reference", reference_loss, ref_amp, "16-mixed" if gpu else "32"),
             ("zoo", torch.compile(zoo_loss) if a.compile else zoo_loss, zoo_amp, "bf16-mixed" if gpu else "32"))
    fp32 = {name: loss_value(fn, teacher, student, x_t, x_s, None) for name, fn, *_ in paths}
    value = {name: loss_value(fn, teacher, student, x_t, x_s, amp) for name, fn, amp, _ in paths}
    peaks = {precision: peak_for(device, precision) for *_, precision in paths}  # one measurement per dtype
    with FlopCounterMode(display=False) as counter:
        make_step(zoo_loss, teacher, student, x_t, x_s, zoo_amp, None)()
    flops = counter.get_total_flops()
    steps = {name: make_step(fn, teacher, student, x_t, x_s, amp,
                             torch.amp.GradScaler(device.type) if amp == torch.float16 else None)
             for name, fn, amp, _ in paths}  # both update the same student: timing does not depend on its values
    mem = {}
    for name in steps:  # warm-up, one path at a time, also gives each path's peak memory
        if gpu:
            torch.cuda.reset_peak_memory_stats(device)
        timeit(steps[name], device=device, warmup=a.warmup, iters=1)
        mem[name] = torch.cuda.max_memory_allocated(device) / 2**20 if gpu else None
    per_step = {name: [] for name in steps}
    for _ in range(a.iters):
        for name, step in steps.items():
            per_step[name].append(timeit(step, device=device, warmup=0, iters=1)["p50"])
    rows = []
    for name, _, _, precision in paths:
        t = np.asarray(per_step[name])
        p50 = float(np.median(t))
        peak, source, dtype = peaks[precision]
        rows.append({"path": name, "precision": precision, "batch": batch_size, "loss": value[name],
                     "images_per_s": batch_size / (p50 / 1e3), "p50_ms": p50, "p90_ms": float(np.percentile(t, 90)),
                     "zoo_step_gflop": flops / 1e9, "mfu": flops / (p50 / 1e3) / (peak * 1e12),
                     "peak": f"{peak:.3g} TFLOP/s {dtype} ({source})"}
                    | ({"peak_mem_mb": mem[name]} if gpu else {}))
    speedup = rows[0]["p50_ms"] / rows[1]["p50_ms"]
    diff32 = abs(fp32["reference"] - fp32["zoo"])
    diff = abs(value["reference"] - value["zoo"])
    summary = (f"zoo / reference throughput: {speedup:.2f}x. Loss in float32: reference {fp32['reference']:.6f}, "
               f"zoo {fp32['zoo']:.6f} (|diff| {diff32:.1e}); at each path's precision |diff| {diff:.1e} "
               f"({'within' if max(diff, diff32) <= 1e-3 else 'NOT within'} 1e-3). MFU counts the zoo step's FLOPs "
               f"for both paths (the reference does more work for the same result). Goals on a GPU: >= 1.5x and "
               f"MFU >= 40 % of the bf16 peak.")
    return rows, summary


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=256, help="halved on out-of-memory until it fits")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--compile", action="store_true", help="torch.compile the zoo loss")
    p.add_argument("--out-dir", default=None, help="where the result JSON goes (default: benchmarks/results)")
    a = p.parse_args(argv)
    device = torch.device(a.device)
    (rows, summary), batch_size, failed = with_backoff(lambda bs: measure(a, device, bs), a.batch_size)
    description = (f"TinyMIM distillation step, ViT-B/16 teacher -> ViT-T/16 student (6 heads, 12-head last "
                   f"block), {a.img_size} px, batch {batch_size}"
                   f"{f' (out of memory at {failed})' if failed else ''}, relation loss at the last blocks, AdamW "
                   f"on the student{', zoo loss torch.compile-d' if a.compile else ''}.")
    path = save("tinymim", {"description": description, "rows": rows, "summary": summary}, device=device,
                out_dir=Path(a.out_dir) if a.out_dir else None)
    for r in rows:
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()})
    print(summary)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""PMT-IQA inference: the zoo's batched-crops path vs a plain re-statement of the authors' test loop.

Both paths use the same model object (same weights) on the same images and the same crop offsets (the BIQ2021
subset's test split, K random 224x224 crops per image, seeded by each image file, so the same image gets the same
crops in the whole table, in a test-only copy and in ``zoo eval``), in this process:

* ``authors`` (the baseline): what pqy000/PMT-IQA's ``MultiTaskIQASolver.test`` runs. Only its BID reader works with
  that solver (model card, pitfall 1): ``BIDFolder.__getitem__`` returns a list of K crops of one image, the test
  loader has batch size 1, and ``torch.cat(img_list, 0)`` makes one NCHW batch of that image's K crops, so each
  forward of ``MultiTaskIQANet`` sees one image's K crops, in fp32: backbone, 1x1 convolution on the
  full-resolution taps then 7x7 average pooling, both heads; the image score is the mean regression output over
  its crops. The restatement is the cheaper side of theirs: it runs under ``torch.inference_mode`` (their ``test``
  keeps autograd on) and computes each tap once (their ResNet-50 backbone computes the first tap's convolution and
  pooling three times).
* ``--authors-per-crop`` adds the same forward one crop at a time (labelled; not a layout their solver runs).
* ``zoo``: `PMTIQA.predict`: the crops of ``--batch-images`` images in forwards of ``--crops-per-forward`` crops
  (default: all in one), channels-last, pooling before the 1x1 convolutions, regression head only; in fp32 and
  under bf16 (or fp16) autocast; with ``--fp32-stages N`` also each low precision with the backbone's first N
  stages kept in fp32.

The paths are timed in turn (authors, zoo fp32, zoo bf16, authors, ...) so that load changes hit all alike.
Reported per path: images/s (median of ``--iters`` timed passes over all images, device-synchronised), the
speed-up over ``authors``, SRCC / PLCC against the MOS, the SRCC difference to ``authors`` and the largest
absolute difference of the image scores.

    python benchmarks/compare_pmt_iqa.py --device cpu --images 64 --batch-images 1 --crops-per-forward 1,4 \
        --authors-per-crop --iters 5
    python benchmarks/compare_pmt_iqa.py --device cuda --images 250 --batch-images 64 --iters 5      # GPU

On a CPU one crop per forward is fastest: larger batches of 224-pixel crops outgrow the caches. Leave bf16 out
(``--precisions fp32``) on CPUs without bf16 instructions (AVX512-BF16 or AMX), where it is slower than fp32.
"""

from __future__ import annotations

import argparse
import copy

import numpy as np
import torch
import torch.nn.functional as F

import zoo
from zoo.bench.compare import save, timeit_alternating
from zoo.data.iqa import read_table
from zoo.data.iqa_crops import IQACrops
from zoo.metrics.iqa import plcc, srcc


AUTHORS = "authors: one image's crops per forward (their test loop), fp32, NCHW"
AUTHORS_PER_CROP = "authors' forward, one crop per forward (not their solver's layout), fp32, NCHW"


@torch.inference_mode()
def authors_forward(model, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops [B, 3, 224, 224] -> (score [B, 1], level logits [B, L]) in the authors' order of operations."""
    taps = model.backbone.forward_taps(crops)
    ms = model.multi_scale
    parts = [fc(F.avg_pool2d(conv(t), 7, 7).view(t.size(0), -1)) for conv, fc, t in zip(ms.convs, ms.fcs, taps)]
    parts.append(ms.fcs[3](F.avg_pool2d(taps[3], 7, 7).view(taps[3].size(0), -1)))
    z = model.heads.shared(torch.cat(parts, 1))
    return model.heads.regression(z), model.heads.classification(z)


def authors_scores(model, crops: torch.Tensor, per_crop: bool = False) -> torch.Tensor:
    """[N, K, 3, S, S] -> [N], fp32: one forward of each image's K crops (their ``test``: ``torch.cat`` of the K
    crops ``BIDFolder`` gives, batch size 1), or with ``per_crop`` one forward per crop."""
    out = torch.empty(len(crops))
    for i, image in enumerate(crops):
        if per_crop:
            out[i] = torch.stack([authors_forward(model, c[None])[0].squeeze() for c in image]).mean()
        else:
            out[i] = authors_forward(model, image)[0].view(-1).mean()
    return out


@torch.inference_mode()
def zoo_scores(model, crops: torch.Tensor, batch_images: int, dtype, chunk: int | None = None,
               fp32_stages: int = 0) -> torch.Tensor:
    model.backbone.fp32_stages = fp32_stages
    out = []
    for s in range(0, len(crops), batch_images):
        x = crops[s:s + batch_images]
        with torch.autocast(x.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out.append(model.predict(x, chunk).float())
    return torch.cat(out)


def test_crops(model, data: str, images: int, crops: int, device) -> tuple[torch.Tensor, np.ndarray]:
    """The first ``images`` test images of ``data`` as seeded crops [N, K, 3, S, S] for ``model``, and their MOS."""
    table = read_table(data)
    test = np.flatnonzero(np.asarray(table.split) == "test")[:images] if table.split else np.arange(images)
    spec = model.input_spec
    ds = IQACrops(table, test, torch.zeros(len(table), dtype=torch.long), spec["input_size"][-1], spec["mean"],
                  spec["std"], crops, train=False)
    return torch.stack([ds[i][0] for i in range(len(ds))]).to(device), table.scores[test]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="pmt_iqa_efficientnet_lite0.biq2021", help="NAME.TAG, folder or NAME")
    p.add_argument("--data", default="biq2021_subset")
    p.add_argument("--device", default="cpu")
    p.add_argument("--images", type=int, default=32, help="test images to score (the subset has 250)")
    p.add_argument("--crops", type=int, default=4)
    p.add_argument("--batch-images", type=int, default=16)
    p.add_argument("--crops-per-forward", default=None,
                   help="crops per forward pass of the zoo path, one or a comma list (a path each; default: all "
                        "crops of --batch-images images)")
    p.add_argument("--authors-per-crop", action="store_true",
                   help="also time the authors' forward one crop at a time (a labelled extra row; their solver runs "
                        "one image's crops per forward, the baseline)")
    p.add_argument("--iters", type=int, default=2)
    p.add_argument("--precisions", default="fp32,bf16",
                   help="zoo path precisions: fp32, bf16, fp16 (autocast; fp16 keeps 3 more mantissa bits than bf16, "
                        "and is fast on GPUs only)")
    p.add_argument("--fp32-stages", type=int, default=0,
                   help="also time each low precision with the backbone's first N stages (the stem counts as one) in "
                        "fp32 (see benchmarks/pmt_iqa_precision.py)")
    a = p.parse_args()
    device = torch.device(a.device)
    name = a.model
    model = zoo.from_pretrained(name) if "." in name or "/" in name else zoo.create_model(name)
    model.eval().to(device)
    crops, mos = test_crops(model, a.data, a.images, a.crops, device)

    authors = authors_scores(model, crops)
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)  # channels-last weights: NHWC convs
    dtypes = {"fp32": ("fp32", None), "bf16": ("bf16 autocast", torch.bfloat16),
              "fp16": ("fp16 autocast", torch.float16)}
    wanted = [w.strip() for w in a.precisions.split(",") if w.strip()]
    if not wanted or set(wanted) - set(dtypes):
        raise SystemExit(f"--precisions takes fp32, bf16 and/or fp16, got {a.precisions!r}")
    paths = {AUTHORS: lambda: authors_scores(model, crops)}
    if a.authors_per_crop:
        paths[AUTHORS_PER_CROP] = lambda: authors_scores(model, crops, per_crop=True)
    chunks = [int(c) for c in a.crops_per_forward.split(",")] if a.crops_per_forward else [None]
    for chunk in chunks:
        for label, dtype in (dtypes[w] for w in wanted):
            for n in (0, a.fp32_stages) if dtype is not None and a.fp32_stages else (0,):
                kept = f", first {n} backbone stages fp32" if n else ""
                paths[f"zoo: {chunk or a.batch_images * a.crops} crops per forward, channels-last, {label}{kept}"] = (
                    lambda dtype=dtype, chunk=chunk, n=n: zoo_scores(model_cl, crops, a.batch_images, dtype, chunk, n))
    times = timeit_alternating(paths, device=device, warmup=1, iters=a.iters)
    t_auth = times[AUTHORS]
    rows = []
    for path, fn in paths.items():
        pred = fn().cpu()
        rows.append({"path": path, "images": len(crops), "crops": a.crops,
                     "images_per_s": len(crops) / (times[path]["p50"] / 1e3),
                     "speedup": t_auth["p50"] / times[path]["p50"], "srcc": srcc(pred, mos), "plcc": plcc(pred, mos),
                     "srcc_diff": srcc(pred, mos) - srcc(authors, mos),
                     "max_abs_score_diff": float((pred - authors).abs().max())})
    for r in rows:
        print(f"{r['path']:<78} {r['images_per_s']:8.2f} images/s  x{r['speedup']:.2f}  SRCC {r['srcc']:.4f} "
              f"(diff {r['srcc_diff']:+.5f}, max |score diff| {r['max_abs_score_diff']:.2e})")
    best = max((r for r in rows if r["path"].startswith("zoo")), key=lambda r: r["speedup"])
    summary = (f"{name} on {len(crops)} {a.data} test images x {a.crops} crops, {device.type}: best zoo path "
               f"{best['speedup']:.2f}x the authors' test loop (one image's {a.crops} crops per forward) "
               f"({best['path']}), SRCC difference {best['srcc_diff']:+.5f}.")
    desc = ("Inference on the same weights, images and crop offsets (seeded by each image file): the authors' test "
            "loop restated (one image's crops per forward, as MultiTaskIQASolver.test runs BIDFolder's K crops; fp32, "
            "NCHW, 1x1 conv before pooling, both heads) against the zoo's `PMTIQA.predict` (channels-last, pooling "
            "before the 1x1 convs, regression head only).")
    path = save("pmt_iqa", {"description": desc, "rows": rows, "summary": summary}, device)
    print(summary)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

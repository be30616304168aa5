"""A learning check: can ``cmt_tiny`` fit ONE generated frame? (model card, "Can it learn at all?").

AdamW at a constant learning rate on a single keyframe of a small generated dataroot (no augmentation, the frame's
own ground truth, denoising queries as configured), and every ``every`` steps the eval-mode predictions compared
with that ground truth::

    OMP_NUM_THREADS=1 python -m zoo.models.cmt.overfit --modalities lidar --queries 200 --lr 1e-3 --steps 400
"""

from __future__ import annotations

import argparse
import time

import torch

from ...data.nuscenes import frames_from_devkit, open_nuscenes
from ...data.nuscenes_synthetic import VERSION, synthetic_nuscenes
from ...registry import create_model
from .datamodule import CMTDataset, collate
from .losses import CMTCriterion

FRAME_DATA = dict(n_scenes=2, samples_per_scene=2, sweeps_per_sample=2, image_size=(400, 225), val_scenes=1, seed=3)


def _probe(model, batch) -> dict:
    """Eval-mode spread of the best class score over queries, and how many of the top-G boxes (G = number of
    ground-truth boxes) lie within 2 m of a ground-truth box of their class."""
    gt, gl = batch["gt_boxes"][0], batch["gt_labels"][0]
    model.eval()
    with torch.no_grad():
        best = model(batch.get("images"), batch["points"], batch.get("lidar2img"))["logits"][-1, 0].sigmoid()
        det = model.predict(batch.get("images"), batch["points"], batch.get("lidar2img"))[0]
    model.train()
    best = best.max(1).values
    k = min(len(gl), len(det["scores"]))
    near = torch.cdist(det["boxes"][:k, :2], gt[:, :2]).min(1)
    hits = int(((near.values < 2.0) & (det["labels"][:k] == gl[near.indices])).sum())
    return {"score_max": float(best.max()), "score_std": float(best.std()), "hits": hits, "top": k}


def overfit_one_frame(modalities=("lidar",), steps: int = 400, lr: float = 1e-3, every: int = 100, seed: int = 0,
                      **model_args) -> list[dict]:
    """Train ``cmt_tiny`` on one frame; rows ``{"step", "loss_cls", "loss_bbox", "seconds"}`` every 25 steps and
    ``{"step", "score_max", "score_std", "hits", "top"}`` every ``every`` steps (and at the end)."""
    torch.manual_seed(seed)
    root = synthetic_nuscenes(**FRAME_DATA)
    frame = frames_from_devkit(open_nuscenes(root, VERSION), "synthetic_val", FRAME_DATA["sweeps_per_sample"])[:1]
    model = create_model("cmt_tiny", modalities=tuple(modalities), **model_args)
    ds = CMTDataset(frame, False, model.pc_range, model.input_spec["image_size"], sweeps=2,
                    modalities=tuple(modalities))
    batch = collate([ds[0]])
    criterion = CMTCriterion(model.num_classes, dn_split=model.dn_split)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    rows, start = [], time.perf_counter()
    model.train()
    for step in range(steps + 1):
        if step % every == 0 or step == steps:
            rows.append({"step": step, **_probe(model, batch)})
        if step == steps:
            break
        out = model(batch.get("images"), batch["points"], batch.get("lidar2img"), batch["gt_boxes"],
                    batch["gt_labels"])
        losses = criterion(out, batch["gt_boxes"], batch["gt_labels"])
        opt.zero_grad()
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 35)
        opt.step()
        if step % 25 == 0:
            rows.append({"step": step, "loss_cls": losses["loss_cls"].item(), "loss_bbox": losses["loss_bbox"].item(),
                         "seconds": time.perf_counter() - start})
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m zoo.models.cmt.overfit", description=__doc__.split("\n")[0])
    p.add_argument("--modalities", default="lidar", help="comma-separated: camera,lidar")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--dn-groups", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--steps", type=int, default=400)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    for row in overfit_one_frame(a.modalities.split(","), a.steps, a.lr, num_query=a.queries, dn_groups=a.dn_groups):
        print(row, flush=True)


if __name__ == "__main__":
    main()

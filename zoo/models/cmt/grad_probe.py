"""Which training frames drive the update: the gradient norm of one frame's loss with both sensors, with the LiDAR
dropped and with the cameras dropped (`ModalMask3D` at rate 1), for a recipe's model at initialisation or from
trained weights. In a batch, the frame with the largest gradient dominates the summed gradient and so the step's
direction (clipping only rescales the step).

    python -m zoo.models.cmt.grad_probe --config configs/cmt/fusion_tiny_synthetic.yaml [--pretrained RUN/model]
        [--model-args '{"bev_skip_empty": true}'] [--frames 10]
"""

import argparse
import json
import statistics

import torch
import yaml

from ...errors import ZooError
from .datamodule import NuScenesDataModule
from .dataset import collate
from .module import CMTModule

DROPS = {"both sensors": [0.0, 0.0], "LiDAR dropped": [0.0, 1.0], "cameras dropped": [1.0, 0.0]}


def frame_gradients(module: CMTModule, batch: dict) -> tuple[float, float, list[tuple[str, float]]]:
    """One batch's total loss -> (gradient L2 norm over all parameters, loss_cls, the 3 largest per-parameter
    norms as (name, norm)). The module stays in train mode (its BatchNorms use the batch's statistics)."""
    module.zero_grad()
    losses = module.losses(batch)
    losses["loss"].backward()
    norms = {n: p.grad.float().norm().item() for n, p in module.named_parameters() if p.grad is not None}
    total = sum(v * v for v in norms.values()) ** 0.5
    return total, losses["loss_cls"].item(), sorted(norms.items(), key=lambda kv: -kv[1])[:3]


def probe(config: dict, pretrained: str | bool = False, model_args: dict | None = None, frames: int = 10,
          seed: int = 0) -> dict[str, dict]:
    """For each of `DROPS`: median and max gradient norm over ``frames`` training frames (batch 1, spread over
    the train split, the recipe's augmentation), mean loss_cls, and the largest parameters of the last frame."""
    if frames < 1:
        raise ZooError(f"frames must be at least 1, got {frames}")
    if not str(config.get("model", {}).get("class_path", "")).endswith("CMTModule") or "data" not in config:
        raise ZooError("the config is not a CMT training recipe (model: CMTModule, data: NuScenesDataModule); "
                       "pass one of configs/cmt/*_synthetic.yaml")
    model_init = dict(config["model"]["init_args"], pretrained=pretrained)
    model_init["model_args"] = dict(model_init.get("model_args") or {}, **(model_args or {}))
    torch.manual_seed(seed)
    module = CMTModule(**model_init).train()
    report = {}
    for name, rates in DROPS.items():
        dm = NuScenesDataModule(**dict(config["data"]["init_args"], modal_mask=rates, batch_size=1, num_workers=0))
        dm.setup("fit")
        torch.manual_seed(seed)  # the same augmentation draws under every condition
        step = max(1, len(dm.train_set) // frames)
        norms, cls = [], []
        for i in range(0, step * frames, step):
            total, loss_cls, top = frame_gradients(module, collate([dm.train_set[i]]))
            norms.append(total)
            cls.append(loss_cls)
        report[name] = {"grad_norm_median": statistics.median(norms), "grad_norm_max": max(norms),
                        "loss_cls_mean": statistics.fmean(cls), "largest_last_frame": top}
    return report


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="a CMT training recipe (zoo fit --config ...)")
    ap.add_argument("--pretrained", default=False, help="trained weights (RUN/model) instead of initialisation")
    ap.add_argument("--model-args", default="{}", help="JSON merged into the recipe's model_args")
    ap.add_argument("--frames", type=int, default=10)
    a = ap.parse_args(argv)
    with open(a.config) as f:
        config = yaml.safe_load(f)
    for name, r in probe(config, a.pretrained, json.loads(a.model_args), a.frames).items():
        top = ", ".join(f"{n} {v:.0f}" for n, v in r["largest_last_frame"])
        print(f"{name}: gradient norm median {r['grad_norm_median']:.1f}, max {r['grad_norm_max']:.1f}; "
              f"loss_cls {r['loss_cls_mean']:.3f}; largest: {top}")


if __name__ == "__main__":
    main()

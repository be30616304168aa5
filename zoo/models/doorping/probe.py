"""Why a DOORPING trigger does or does not move: one trigger update under each objective, on networks trained for
a few epochs on real images.

``python -m zoo.models.doorping.probe --data fashion_mnist [--epochs 0 5 50] [--steps 50] [--json OUT]`` trains a
fresh ``--arch`` network on ``--images`` random real training images for each number of epochs (plain SGD, the DC
inner loop's lr 0.01), then runs one update from DOORPING's random initial trigger with the authors' objective and
with the zoo's ``relative`` one, and prints each `TriggerUpdate` (unit, activation before and after, Adam steps
taken, final loss) and how far the patch moved.
"""

from __future__ import annotations

import argparse
import json

import torch

from ...io import write_json
from ...registry import create_model
from .attack import pixel_bounds, random_trigger, update_trigger
from .evaluate import train_network
from .real_images import load_real


def probe(data: str, arch: str = "doorping_convnet", epochs=(0, 5, 50), images: int = 100, steps: int = 50,
          seed: int = 0) -> list[dict]:
    """One row per (epochs, objective): the update record and the L2 distance the trigger moved."""
    torch.manual_seed(seed)
    real = load_real(data, "train")
    c, h, _ = real.shape
    idx = torch.randperm(len(real.labels))[:images]
    trigger, mask = random_trigger(h, 2, real.mean, real.std, torch.Generator().manual_seed(seed))
    bounds = pixel_bounds(real.mean, real.std)
    rows = []
    for ep in epochs:
        net = create_model(arch, channels=c, num_classes=real.num_classes, image_size=h, mean=real.mean,
                           std=real.std)
        train_network(net, real.images[idx], real.labels[idx], epochs=ep, momentum=0.0, weight_decay=0.0,
                      lr_decay=False)
        for objective in ("authors", "relative"):
            new, rec = update_trigger(net, trigger, mask, bounds, objective=objective, max_steps=steps)
            rows.append({"data": real.name, "arch": arch, "epochs": ep, "objective": objective, **rec.__dict__,
                         "max_steps": steps, "moved": float((new - trigger).norm())})
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m zoo.models.doorping.probe")
    p.add_argument("--data", required=True)
    p.add_argument("--arch", default="doorping_convnet")
    p.add_argument("--epochs", type=int, nargs="+", default=[0, 5, 50])
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    rows = probe(a.data, a.arch, a.epochs, a.images, a.steps)
    for r in rows:
        print(json.dumps(r))
    if a.json:
        write_json(a.json, rows)


if __name__ == "__main__":
    main()

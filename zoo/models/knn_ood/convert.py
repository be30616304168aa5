"""Authors' checkpoints -> zoo folders.

Two layouts are recognised from the keys (a ``module.`` prefix and a ``state_dict``/``model`` wrapper are
stripped first):

* **akamaster/pytorch_resnet_cifar10** (the widely used CIFAR ResNets, option-A shortcuts):
  ``{'state_dict': {'module.conv1.weight', ..., 'module.layer3.8.bn2.running_var', 'module.linear.weight'},
  'best_prec1': ...}``. The depth is inferred from the number of blocks in ``layer1`` (depth = 6n + 2), so depths
  never seen before convert too. These were trained on inputs normalised with ImageNet statistics.
* **deeplearning-wisc/knn-ood** CIFAR ResNet-18 (``models/resnet_ss.py``; CE and SupCon):
  ``conv1``, ``bn1``, ``layer{1-4}.{j}.{conv1,bn1,conv2,bn2,downsample.{0,1}}``, ``fc``, and for SupCon a
  projection ``head.{0,2}``. The projection is not part of the backbone (the paper scores penultimate
  features) and is dropped; CIFAR statistics normalise the inputs, as in the authors' loaders. A SupCon
  checkpoint's ``fc`` was never trained (the authors' issues #6 and #16: their ID accuracy comes from a separate
  linear probe), so its MSP, energy and ID accuracy mean nothing: the converter says so in a warning and in the
  folder's config (``classifier: "untrained"``, which `zoo eval --task ood` reads); its kNN scores, from the
  features, are the paper's KNN+.

BatchNorm ``num_batches_tracked`` counters, absent from checkpoints saved by old PyTorch, are set to 0.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch

from ...checkpoint import foreign_state_dict, load_state_dict, read_foreign, save_pretrained, with_bn_counters
from ...errors import ZooError
from ...hub import sha256_file
from ...registry import create_model
from .model import UNTRAINED

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _blocks(sd: dict, stage: int) -> int:
    return len({int(m.group(1)) for k in sd if (m := re.match(rf"layer{stage}\.(\d+)\.", k))})


def map_akamaster(sd: dict) -> tuple[str, dict, dict]:
    """(architecture, model_args, zoo state dict) for an akamaster CIFAR ResNet of any depth."""
    n = _blocks(sd, 1)
    if n == 0 or any(_blocks(sd, s) != n for s in (2, 3)) or "layer4.0.conv1.weight" in sd:
        raise ZooError("not an option-A CIFAR ResNet: expected layer1-3 with the same number of blocks")
    depth = 6 * n + 2
    num_classes = sd["linear.weight"].shape[0]
    out = {("fc." + k[len("linear."):] if k.startswith("linear.") else k): v for k, v in sd.items()}
    args = {"depth": depth, "num_classes": num_classes, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    return "knn_ood_cifar_resnet", args, with_bn_counters(out)


def map_knn_ood_resnet18(sd: dict) -> tuple[str, dict, dict]:
    """(architecture, model_args, zoo state dict) for the knn-ood repo's CIFAR ResNet-18 (CE or SupCon)."""
    if [_blocks(sd, s) for s in (1, 2, 3, 4)] != [2, 2, 2, 2]:
        raise ZooError("not a CIFAR ResNet-18: expected 2 blocks in each of layer1-4")
    out = {k.replace(".downsample.", ".shortcut."): v for k, v in sd.items() if not k.startswith("head.")}
    return "knn_ood_resnet18", {"num_classes": sd["fc.weight"].shape[0]}, with_bn_counters(out)


def convert(src: str | Path, out_dir: str | Path) -> Path:
    """Convert ``src`` (either layout above) into a zoo folder at ``out_dir``; returns ``out_dir``."""
    src = Path(src)
    ckpt = read_foreign(src)
    sd = foreign_state_dict(ckpt, src)
    wrapped = any(isinstance(ckpt.get(k), dict) for k in ("model", "state_dict"))
    extras = {k: v for k, v in ckpt.items() if not isinstance(v, dict)} if wrapped else {}
    stem = sd.get("conv1.weight")
    if stem is not None and stem.dim() == 4 and stem.shape[-1] == 7:
        raise ZooError(f"{src}: an ImageNet-style ResNet (7x7 stem: conv1.weight {list(stem.shape)}), not a CIFAR "
                       f"one: `zoo convert pmt_iqa` reads torchvision ImageNet ResNets (as an ImageNet backbone); "
                       f"knn_ood takes akamaster CIFAR ResNets or the knn-ood CIFAR ResNet-18 (3x3 stem)")
    if "linear.weight" in sd:
        arch, args, zoo_sd = map_akamaster(sd)
    elif "fc.weight" in sd and "layer4.0.conv1.weight" in sd:
        arch, args, zoo_sd = map_knn_ood_resnet18(sd)
    else:
        sample = ", ".join(list(sd)[:5])
        raise ZooError(f"{src}: unrecognised layout (first keys: {sample}); expected an akamaster CIFAR ResNet "
                       f"or a knn-ood CIFAR ResNet-18 checkpoint")
    model = create_model(arch, **args)
    load_state_dict(model, zoo_sd, source=str(src))
    if "head.0.weight" in sd:
        model.zoo_cfg = {**model.zoo_cfg, "classifier": UNTRAINED}
        warnings.warn(f"{src.name} is a SupCon checkpoint: its fc classifier was never trained, so the MSP and energy "
                      f"scores and the ID accuracy of `zoo eval --task ood` mean nothing for it; its kNN scores (the "
                      f"paper's KNN+) come from the features and are unaffected", stacklevel=2)
    meta = {"converted_from": src.name, "source_sha256": sha256_file(src),
            **{k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in extras.items()
               if isinstance(v, (int, float, str, torch.Tensor)) and (not isinstance(v, torch.Tensor) or v.numel() == 1)}}
    return save_pretrained(model, out_dir, metadata=meta)

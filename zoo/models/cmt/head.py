"""CMT's per-layer prediction heads and the box code.

Each decoder layer has its own head parameters: the L layer outputs are stacked along channels and every
branch is a grouped Conv1d (groups = L) over the query axis: Conv1d(C -> 64, no bias) -> group LayerNorm ->
ReLU -> Conv1d(64 -> out). Branches and widths: center 2, height 1, dim 3, rot 2, vel 2, cls_logits 10.

Box code (the authors' ordering, kept so their checkpoints decode correctly; issues #71, #103): the 10-vector
[center(2), height(1), dim(3), rot(2), vel(2)] is compared with targets encoded as
[cx, cy, log l, log w, cz, log h, sin yaw, cos yaw, vx, vy] (l = x_size along the heading). So the ``height``
branch, which carries the anchor's z prior and a sigmoid squashed into [z0, z1], in fact learns log l;
``dim`` learns (log w, cz, log h). Training and decoding agree, so boxes come out right.
"""

from __future__ import annotations

import torch
from torch import nn

from ...errors import ZooError

BRANCHES = {"center": 2, "height": 1, "dim": 3, "rot": 2, "vel": 2}


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    x = x.clamp(0, 1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


class GroupLayerNorm1d(nn.Module):
    """LayerNorm over the channels of each group at every position: [B, C, L] with C = groups * c."""

    def __init__(self, channels: int, groups: int = 1, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.groups, self.eps = groups, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, length = x.shape
        g = x.view(n, self.groups, c // self.groups, length)
        g = (g - g.mean(2, keepdim=True)) / (g.var(2, unbiased=False, keepdim=True) + self.eps).sqrt()
        return self.weight.view(1, c, 1) * g.view(n, c, length) + self.bias.view(1, c, 1)


class TaskHead(nn.Module):
    """The per-layer branches of one task (CMT uses one task with all classes).

    Initialisation (``init``): ``"pytorch"`` keeps PyTorch's default layer initialisation, which is what the authors'
    code runs: their ``SeparateTaskHead.init_weights`` (Kaiming fan-out convs, classification bias -2.19) is never
    called, because mmcv's ``BaseModule.init_weights`` recurses only into children that have ``init_weights`` and
    ``CmtHead`` keeps its task heads in a plain ``nn.ModuleList`` (the same bug as mmdetection3d's CenterHead,
    open-mmlab/mmdetection3d#1554). ``"declared"`` applies what their ``init_weights`` declares (the zoo's only
    initialisation until 2026-12-06); it starts the box branches far from their anchors (centre logits of std 2-4
    across queries against 0.35) and every score near 0.1.

    Args:
        in_channels: decoder width; num_classes: classes; groups: decoder layers;
        head_conv: hidden width (64); kernel: Conv1d kernel over the query axis (1; the authors' LiDAR-only
        config uses 3, which mixes neighbouring queries); init: ``"pytorch"`` or ``"declared"`` (above);
        init_bias: the classification bias of ``"declared"`` (-2.19, prior 0.1).
    """

    def __init__(self, in_channels: int = 256, num_classes: int = 10, groups: int = 6, head_conv: int = 64,
                 kernel: int = 1, init: str = "pytorch", init_bias: float = -2.19):
        super().__init__()
        if init not in ("pytorch", "declared"):
            raise ZooError(f"head_init {init!r}: give 'pytorch' (what the authors' code runs) or 'declared' (what "
                           f"their SeparateTaskHead.init_weights declares)")
        self.groups = groups
        for name, out in {**BRANCHES, "cls_logits": num_classes}.items():
            branch = nn.Sequential(
                nn.Conv1d(in_channels * groups, head_conv * groups, kernel, padding=kernel // 2, groups=groups,
                          bias=False),
                GroupLayerNorm1d(head_conv * groups, groups), nn.ReLU(inplace=True),
                nn.Conv1d(head_conv * groups, out * groups, kernel, padding=kernel // 2, groups=groups))
            if init == "declared":
                for m in branch:
                    if isinstance(m, nn.Conv1d):
                        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                        if m.bias is not None:
                            nn.init.zeros_(m.bias)
            setattr(self, name, branch)
        if init == "declared":
            nn.init.constant_(self.cls_logits[-1].bias, init_bias)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Decoder outputs [L, B, Q, C] -> {branch: [L, B, Q, out]}."""
        n, b, q, c = x.shape
        x = x.permute(1, 0, 3, 2).reshape(b, n * c, q)
        out = {}
        for name in (*BRANCHES, "cls_logits"):
            y = getattr(self, name)(x)  # [B, L * out, Q]
            out[name] = y.view(b, n, -1, q).permute(1, 0, 3, 2)
        return out


def assemble_code(branches: dict[str, torch.Tensor], anchors: torch.Tensor, pc_range) -> torch.Tensor:
    """Head branches + anchors [B, Q, 3] (in [0, 1]) -> box code [L, B, Q, 10] with the centre in metres.

    centre = sigmoid(raw + logit(anchor_xy)) mapped to the x/y range; height = sigmoid(raw + logit(anchor_z))
    mapped to [z0, z1] (the authors' mapping; see the module docstring for what it learns).
    """
    ref = inverse_sigmoid(anchors)
    lo, hi = branches["center"].new_tensor(pc_range[:3]), branches["center"].new_tensor(pc_range[3:])
    center = (branches["center"] + ref[None, ..., :2]).sigmoid() * (hi[:2] - lo[:2]) + lo[:2]
    height = (branches["height"] + ref[None, ..., 2:3]).sigmoid() * (hi[2:] - lo[2:]) + lo[2:]
    return torch.cat([center, height, branches["dim"], branches["rot"], branches["vel"]], -1)


def encode_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """Boxes [N, 9] (x, y, z centre, l, w, h, yaw, vx, vy) -> targets [N, 10]
    (cx, cy, log l, log w, cz, log h, sin yaw, cos yaw, vx, vy)."""
    return torch.cat([boxes[:, 0:2], boxes[:, 3:5].log(), boxes[:, 2:3], boxes[:, 5:6].log(),
                      boxes[:, 6:7].sin(), boxes[:, 6:7].cos(), boxes[:, 7:9]], -1)


def decode_code(code: torch.Tensor) -> torch.Tensor:
    """Box code [..., 10] -> boxes [..., 9] (x, y, z centre, l, w, h, yaw, vx, vy); inverse of `encode_boxes`."""
    return torch.cat([code[..., 0:2], code[..., 4:5], code[..., 2:4].exp(), code[..., 5:6].exp(),
                      torch.atan2(code[..., 6:7], code[..., 7:8]), code[..., 8:10]], -1)


def decode_topk(code: torch.Tensor, logits: torch.Tensor, max_num: int = 300,
                post_center_range=(-61.2, -61.2, -10.0, 61.2, 61.2, 10.0)) -> list[dict]:
    """The authors' NMS-free decoding of the last layer: sigmoid scores over (query, class), top ``max_num``
    pairs, boxes whose centre lies in ``post_center_range``; no score threshold.

    Args:
        code: [B, Q, 10]; logits: [B, Q, C].
    Returns:
        Per sample ``{"boxes": [K, 9], "scores": [K], "labels": [K]}``.
    """
    out = []
    num_classes = logits.shape[-1]
    lo, hi = code.new_tensor(post_center_range[:3]), code.new_tensor(post_center_range[3:])
    for c, lg in zip(code, logits):
        scores, index = lg.sigmoid().flatten().topk(min(max_num, lg.numel()))
        labels, query = index % num_classes, index // num_classes
        boxes = decode_code(c[query])
        keep = ((boxes[:, :3] >= lo) & (boxes[:, :3] <= hi)).all(1)
        out.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
    return out

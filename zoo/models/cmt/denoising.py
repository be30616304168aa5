"""Point-based query denoising (PQD), CMT's DN-DETR-style training aid.

During training, G groups of extra queries are placed before the matching queries: each group holds one query
per ground-truth box, anchored at the box's gravity centre plus uniform noise in [-1, 1]^3 * (box size / 2).
A query whose noise vector has L2 norm > ``split`` (0.75) must predict background. Each DN query is supervised
by its own box (no matching). Attention mask: matching queries cannot see DN queries, DN groups cannot see each
other.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class DNQueries:
    """anchors [B, pad + Q, 3]; attn_mask [pad + Q, pad + Q] bool (True = may attend); pad_size; and for the
    loss, per DN query: batch [K], slot [K] (its row among the ``pad_size`` DN rows), labels [K] (``num_classes``
    = background), boxes [K, 9] (the un-noised targets)."""

    anchors: torch.Tensor
    attn_mask: torch.Tensor | None
    pad_size: int
    batch: torch.Tensor
    slot: torch.Tensor
    labels: torch.Tensor
    boxes: torch.Tensor


def prepare_dn(anchors: torch.Tensor, gt_boxes: list[torch.Tensor], gt_labels: list[torch.Tensor], pc_range,
               num_classes: int, max_groups: int = 10, noise_scale: float = 1.0, split: float = 0.75,
               generator: torch.Generator | None = None) -> DNQueries:
    """DN anchors and mask for a batch.

    Args:
        anchors: the learnt anchors [Q, 3] (normalised); gt_boxes: per sample [n_i, 9] (gravity centre, l, w, h,
            yaw, vx, vy); gt_labels: per sample [n_i].
        max_groups: G = min(max_groups, Q // max n_i) (the authors' ``scalar``); G = 0 (a frame with more boxes
            than queries, where the authors' code fails) gives the batch no DN queries.
    """
    b, q, dev = len(gt_boxes), anchors.shape[0], anchors.device
    counts = [len(g) for g in gt_boxes]
    single = max(counts, default=0)
    base = anchors[None].expand(b, -1, -1)
    groups = min(max_groups, q // single) if single else 0
    if groups == 0:  # no boxes, or more boxes in a frame than queries: no group fits, the batch goes without DN
        empty = torch.zeros(0, dtype=torch.long, device=dev)
        return DNQueries(base, None, 0, empty, empty, empty, anchors.new_zeros(0, 9))
    boxes = torch.cat(gt_boxes).repeat(groups, 1)
    labels = torch.cat(gt_labels).repeat(groups).clone()
    batch = torch.cat([torch.full((n,), i, device=dev) for i, n in enumerate(counts)]).repeat(groups)
    within = torch.cat([torch.arange(n, device=dev) for n in counts])
    slot = torch.cat([within + single * g for g in range(groups)])
    unit = torch.rand(boxes[:, :3].shape, generator=generator, device="cpu").to(dev) * 2 - 1
    centre = boxes[:, :3] + unit * boxes[:, 3:6] / 2 * noise_scale
    lo, hi = centre.new_tensor(pc_range[:3]), centre.new_tensor(pc_range[3:])
    centre = ((centre - lo) / (hi - lo)).clamp(0, 1)
    labels[unit.norm(dim=1) > split] = num_classes
    pad = single * groups
    dn_anchors = anchors.new_zeros(b, pad, 3)
    dn_anchors[batch, slot] = centre.to(anchors.dtype)
    size = pad + q
    blocked = torch.zeros(size, size, dtype=torch.bool, device=dev)
    blocked[pad:, :pad] = True
    for g in range(groups):
        rows = slice(single * g, single * (g + 1))
        blocked[rows, : single * g] = True
        blocked[rows, single * (g + 1): pad] = True
    return DNQueries(torch.cat([dn_anchors, base], 1), ~blocked, pad, batch, slot, labels, boxes)

"""CMT's training objective: Hungarian matching per sample and per decoder layer, sigmoid focal loss and L1 box
loss on every layer, plus the same losses on the denoising queries.

Settings of the authors' configs (defaults below): focal alpha 0.25, gamma 2, weight 2.0; L1 weight 0.25 with
code weights [2, 2, 1, 1, 1, 1, 1, 1, 0.2, 0.2]; matching cost 2.0 x focal cost + 0.25 x L1 over the first 8
code entries (velocity excluded), both sides multiplied by the code weights; classification normaliser
num_pos + 0.1 x num_neg; DN classification normaliser num_dn x pi / 6 x 0.75^3.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from .head import encode_boxes

CODE_WEIGHTS = (2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2)


def frame_output(out: dict, i: int) -> dict:
    """Frame ``i`` of a batch's model output as a batch of one: ``code`` [L, 1, Q, 10], ``logits`` [L, 1, Q, C],
    and the frame's own denoising queries (``dn_code`` [L, 1, pad, 10], ``dn_logits``, ``dn``), for
    `CMTCriterion` with that frame's ground truth."""
    one = {"code": out["code"][:, i:i + 1], "logits": out["logits"][:, i:i + 1]}
    if "dn" in out:
        dn = out["dn"]
        keep = dn.batch == i
        one.update(dn_code=out["dn_code"][:, i:i + 1], dn_logits=out["dn_logits"][:, i:i + 1],
                   dn=dataclasses.replace(dn, batch=torch.zeros_like(dn.batch[keep]), slot=dn.slot[keep],
                                          labels=dn.labels[keep], boxes=dn.boxes[keep]))
    return one


def sigmoid_focal_loss(logits: torch.Tensor, labels: torch.Tensor, alpha: float = 0.25,
                       gamma: float = 2.0) -> torch.Tensor:
    """Summed sigmoid focal loss; logits [N, C], labels [N] in 0..C (C = background: all-zero target)."""
    target = torch.zeros_like(logits)
    fg = labels < logits.shape[1]
    target[fg.nonzero().squeeze(1), labels[fg]] = 1.0
    p = logits.sigmoid()
    ce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    alpha_t = alpha * target + (1 - alpha) * (1 - target)
    return (alpha_t * (1 - p_t) ** gamma * ce).sum()


def focal_cost(logits: torch.Tensor, gt_labels: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0,
               eps: float = 1e-12) -> torch.Tensor:
    """mmdet's FocalLossCost: [Q, C] logits, [G] labels -> [Q, G]."""
    p = logits.sigmoid()
    neg = -(1 - p + eps).log() * (1 - alpha) * p.pow(gamma)
    pos = -(p + eps).log() * alpha * (1 - p).pow(gamma)
    return pos[:, gt_labels] - neg[:, gt_labels]


@torch.no_grad()
def hungarian_match(code: torch.Tensor, logits: torch.Tensor, gt_code: torch.Tensor, gt_labels: torch.Tensor,
                    code_weights: torch.Tensor, cls_weight: float = 2.0, reg_weight: float = 0.25):
    """One-to-one assignment of queries to ground truth (scipy on the CPU).

    Args:
        code: [Q, 10] predicted box code; logits: [Q, C]; gt_code: [G, 10] encoded targets; gt_labels: [G].
    Returns:
        (query indices [M], gt indices [M]) as int64 tensors on ``code``'s device.
    """
    if len(gt_labels) == 0:
        empty = torch.zeros(0, dtype=torch.long, device=code.device)
        return empty, empty
    cost = cls_weight * focal_cost(logits.float(), gt_labels)
    cost = cost + reg_weight * torch.cdist((code * code_weights)[:, :8].float(), (gt_code * code_weights)[:, :8].float(),
                                           p=1)
    rows, cols = linear_sum_assignment(np.nan_to_num(cost.cpu().numpy(), nan=1e8, posinf=1e8))
    return (torch.as_tensor(rows, dtype=torch.long, device=code.device),
            torch.as_tensor(cols, dtype=torch.long, device=code.device))


class CMTCriterion:
    """Computes the loss dict of one batch from the model's output.

    Returns keys ``loss_cls``, ``loss_bbox`` (last layer), ``d{i}.loss_cls``, ``d{i}.loss_bbox`` (earlier
    layers), the same with ``dn_`` when denoising queries exist, and ``loss`` (their sum).
    """

    def __init__(self, num_classes: int = 10, cls_weight: float = 2.0, bbox_weight: float = 0.25,
                 alpha: float = 0.25, gamma: float = 2.0, code_weights=CODE_WEIGHTS, match_cls_weight: float = 2.0,
                 match_reg_weight: float = 0.25, dn_weight: float = 1.0, dn_split: float = 0.75):
        self.num_classes, self.cls_weight, self.bbox_weight = num_classes, cls_weight, bbox_weight
        self.alpha, self.gamma, self.code_weights = alpha, gamma, tuple(code_weights)
        self.match_cls_weight, self.match_reg_weight = match_cls_weight, match_reg_weight
        self.dn_weight, self.dn_split = dn_weight, dn_split

    def _l1(self, code, targets, weights):
        finite = torch.isfinite(targets).all(1)
        return (torch.abs(code[finite] - targets[finite]) * weights[finite]).sum()

    def layer_loss(self, code, logits, gt_boxes, gt_labels):
        """Matching loss of one layer: code [B, Q, 10], logits [B, Q, C] -> (cls, bbox)."""
        b, q, _ = code.shape
        cw = code.new_tensor(self.code_weights)
        labels = torch.full((b, q), self.num_classes, dtype=torch.long, device=code.device)
        targets = code.new_zeros(b, q, 10)
        weights = code.new_zeros(b, q, 10)
        num_pos = 0
        for i in range(b):
            gt_code = encode_boxes(gt_boxes[i].to(code))
            rows, cols = hungarian_match(code[i].detach(), logits[i].detach(), gt_code, gt_labels[i], cw,
                                         self.match_cls_weight, self.match_reg_weight)
            labels[i, rows] = gt_labels[i][cols]
            targets[i, rows] = gt_code[cols]
            weights[i, rows] = cw
            num_pos += len(rows)
        cls_norm = max(num_pos + 0.1 * (b * q - num_pos), 1.0)
        loss_cls = sigmoid_focal_loss(logits.flatten(0, 1).float(), labels.flatten(), self.alpha, self.gamma) / cls_norm
        loss_bbox = self._l1(code.flatten(0, 1).float(), targets.flatten(0, 1), weights.flatten(0, 1)) / max(num_pos, 1)
        return self.cls_weight * loss_cls, self.bbox_weight * loss_bbox

    def dn_loss(self, code, logits, dn):
        """DN loss of one layer: code [B, pad, 10], logits [B, pad, C]; every DN query has its own target."""
        c, lg = code[dn.batch, dn.slot].float(), logits[dn.batch, dn.slot].float()
        num = len(dn.labels)
        cls_norm = max(num * math.pi / 6 * self.dn_split ** 3, 1.0)
        loss_cls = sigmoid_focal_loss(lg, dn.labels, self.alpha, self.gamma) / cls_norm
        targets = encode_boxes(dn.boxes.to(c))
        weights = c.new_tensor(self.code_weights).expand_as(c)
        loss_bbox = self._l1(c, targets, weights) / max(num, 1)
        return self.dn_weight * self.cls_weight * loss_cls, self.dn_weight * self.bbox_weight * loss_bbox

    def __call__(self, out: dict, gt_boxes: list[torch.Tensor], gt_labels: list[torch.Tensor]) -> dict:
        losses = {}
        n = out["code"].shape[0]
        for layer in range(n):
            prefix = "" if layer == n - 1 else f"d{layer}."
            losses[f"{prefix}loss_cls"], losses[f"{prefix}loss_bbox"] = self.layer_loss(
                out["code"][layer], out["logits"][layer], gt_boxes, gt_labels)
            if "dn" in out:
                losses[f"{prefix}dn_loss_cls"], losses[f"{prefix}dn_loss_bbox"] = self.dn_loss(
                    out["dn_code"][layer], out["dn_logits"][layer], out["dn"])
        losses["loss"] = sum(losses.values())
        return losses

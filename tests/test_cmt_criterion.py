"""CMT's training loss values against hand computations: the matching loss (focal loss weight 2.0 over
num_pos + 0.1 num_neg, L1 weight 0.25 with code weights [2, 2, 1, 1, 1, 1, 1, 1, 0.2, 0.2] over num_pos) and the
denoising loss (the same terms, classification over num_dn x pi / 6 x 0.75^3, L1 over num_dn), as the fact sheet
(`../shared/papers/cmt.md`, 1.9 and 1.10) gives the authors' settings."""

import math

import pytest
import torch

from zoo.models.cmt.denoising import DNQueries
from zoo.models.cmt.losses import CMTCriterion

pytestmark = pytest.mark.usefixtures("one_thread")

CODE_WEIGHTS = torch.tensor([2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2])
BOX = torch.tensor([1.0, -2.0, 0.5, 4.0, 2.0, 1.5, 0.3, 1.0, -0.5])  # x, y, z, l, w, h, yaw, vx, vy
# its target code, written out: (cx, cy, log l, log w, cz, log h, sin yaw, cos yaw, vx, vy)
BOX_CODE = torch.tensor([1.0, -2.0, math.log(4.0), math.log(2.0), 0.5, math.log(1.5), math.sin(0.3), math.cos(0.3),
                         1.0, -0.5])
OTHER = torch.tensor([-3.0, 4.0, -0.2, 0.8, 0.6, 1.1, -1.2, 0.0, 0.4])
OTHER_CODE = torch.tensor([-3.0, 4.0, math.log(0.8), math.log(0.6), -0.2, math.log(1.1), math.sin(-1.2),
                           math.cos(-1.2), 0.0, 0.4])
# a residual in every code entry, the velocity ones included
DELTA = torch.tensor([0.1, -0.2, 0.05, 0.1, -0.3, 0.02, 0.1, -0.1, 0.5, -0.4])


def _focal(logits: torch.Tensor, labels: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Summed sigmoid focal loss written out: -alpha (1 - p)^gamma log p on the label's class,
    -(1 - alpha) p^gamma log(1 - p) on every other class (label C = background: all classes negative)."""
    total = torch.tensor(0.0, dtype=torch.float64)
    for row, label in zip(logits.double(), labels.tolist()):
        for c, x in enumerate(row):
            p = torch.sigmoid(x)
            total += -alpha * (1 - p) ** gamma * torch.log(p) if c == label else \
                -(1 - alpha) * p ** gamma * torch.log(1 - p)
    return total


def test_matching_losses_equal_the_hand_computed_focal_and_weighted_l1_terms():
    """Two layers, a frame with one box and a frame without: in each layer query 1 of frame 0 lies near the box
    and the other queries 20 m off, so the match is forced. loss_cls = 2.0 x focal sum / (1 + 0.1 x 5) and
    loss_bbox = 0.25 x code-weighted L1 of the matched query / 1, per layer (``d0.`` the first, no prefix the
    last); ``loss`` is their sum."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 2, 3, 10, generator=g)
    code = BOX_CODE + 20.0 * torch.ones(2, 2, 3, 10)  # every query far from the box ...
    code[0, 0, 1] = BOX_CODE + DELTA  # ... but query 1 of frame 0, in each layer with its own residual
    code[1, 0, 1] = BOX_CODE - 2 * DELTA
    gt_boxes, gt_labels = [BOX[None], torch.zeros(0, 9)], [torch.tensor([4]), torch.zeros(0, dtype=torch.long)]
    losses = CMTCriterion()({"code": code, "logits": logits}, gt_boxes, gt_labels)
    labels = torch.tensor([10, 4, 10, 10, 10, 10])  # frame 0's queries, then frame 1's; 10 = background
    for layer, prefix, delta in ((0, "d0.", DELTA), (1, "", -2 * DELTA)):
        cls = 2.0 * _focal(logits[layer].flatten(0, 1), labels) / (1 + 0.1 * 5)
        bbox = 0.25 * (delta.abs() * CODE_WEIGHTS).sum() / 1
        assert losses[f"{prefix}loss_cls"].item() == pytest.approx(cls.item(), rel=1e-5), prefix
        assert losses[f"{prefix}loss_bbox"].item() == pytest.approx(bbox.item(), rel=1e-5), prefix
    assert set(losses) == {"d0.loss_cls", "d0.loss_bbox", "loss_cls", "loss_bbox", "loss"}
    assert losses["loss"].item() == pytest.approx(sum(v.item() for k, v in losses.items() if k != "loss"), rel=1e-6)


def test_denoising_losses_equal_the_hand_computed_terms_with_the_expected_positive_count_normaliser():
    """Eight DN queries in ten rows (two rows of padding), three of them background: dn_loss_cls = 2.0 x focal
    sum over the eight / (8 x pi / 6 x 0.75^3) and dn_loss_bbox = 0.25 x code-weighted L1 over all eight, the
    background ones included, / 8; the padding rows are not supervised."""
    g = torch.Generator().manual_seed(1)
    slot = torch.tensor([0, 1, 2, 3, 5, 6, 7, 8])
    labels = torch.tensor([4, 10, 2, 4, 10, 2, 10, 4])
    boxes = torch.stack([BOX, BOX, OTHER, BOX, BOX, OTHER, OTHER, BOX])
    targets = torch.stack([BOX_CODE, BOX_CODE, OTHER_CODE, BOX_CODE, BOX_CODE, OTHER_CODE, OTHER_CODE, BOX_CODE])
    residual = torch.randn(8, 10, generator=g)
    dn_code = torch.full((1, 1, 10, 10), 50.0)  # padding rows far off: any use of them would show
    dn_code[0, 0, slot] = targets + residual
    dn_logits = torch.randn(1, 1, 10, 10, generator=g)
    dn = DNQueries(anchors=torch.zeros(1, 10, 3), attn_mask=None, pad_size=10, batch=torch.zeros(8, dtype=torch.long),
                   slot=slot, labels=labels, boxes=boxes)
    out = {"code": (BOX_CODE + 20.0).expand(1, 1, 3, 10).clone(), "logits": torch.randn(1, 1, 3, 10, generator=g),
           "dn_code": dn_code, "dn_logits": dn_logits, "dn": dn}
    losses = CMTCriterion()(out, [BOX[None]], [torch.tensor([4])])
    cls = 2.0 * _focal(dn_logits[0, 0, slot], labels) / (8 * math.pi / 6 * 0.75 ** 3)
    bbox = 0.25 * (residual.abs() * CODE_WEIGHTS).sum() / 8
    assert losses["dn_loss_cls"].item() == pytest.approx(cls.item(), rel=1e-5)
    assert losses["dn_loss_bbox"].item() == pytest.approx(bbox.item(), rel=1e-5)

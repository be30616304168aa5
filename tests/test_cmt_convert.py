"""`zoo convert cmt` on state dicts with the authors' exact key names and shapes (mmdet3d 1.0 module tree of the
released configs, written out here independently of the zoo's model), sparse-conv kernel layout included."""

import re

import pytest
import torch

from zoo.errors import ZooError
from zoo.models.cmt.sparse_conv import SparseTensor

HEADS = {"center": 2, "height": 1, "dim": 3, "rot": 2, "vel": 2, "cls_logits": 10}


pytestmark = pytest.mark.usefixtures("one_thread")


def _t(*shape):
    return torch.empty(*shape).uniform_(-0.1, 0.1)


def _bn(sd, prefix, c):
    sd.update({f"{prefix}.weight": _t(c), f"{prefix}.bias": _t(c), f"{prefix}.running_mean": _t(c),
               f"{prefix}.running_var": torch.rand(c) + 0.5, f"{prefix}.num_batches_tracked": torch.tensor(7)})


def official_state_dict(camera=True, lidar=True, head_kernel=1, layers=6, hidden=256):
    """The authors' checkpoint keys: R50 800x320 fusion (both), CMT-L (lidar only). Sparse kernels are saved as
    [kD, kH, kW, C_in, C_out] by mmdet3d's spconv-2 hook."""
    sd = {}
    p = "pts_bbox_head."
    if camera:
        import torchvision

        sd.update({f"img_backbone.{k}": v for k, v in torchvision.models.resnet50().state_dict().items()
                   if not k.startswith("fc.")})
        for i, c in enumerate((1024, 2048)):
            sd[f"img_neck.lateral_convs.{i}.conv.weight"], sd[f"img_neck.lateral_convs.{i}.conv.bias"] = _t(256, c, 1, 1), _t(256)
        sd["img_neck.fpn_convs.0.conv.weight"], sd["img_neck.fpn_convs.0.conv.bias"] = _t(256, 256, 3, 3), _t(256)
        sd[p + "rv_embedding.0.weight"], sd[p + "rv_embedding.0.bias"] = _t(4 * hidden, 192), _t(4 * hidden)
        sd[p + "rv_embedding.2.weight"], sd[p + "rv_embedding.2.bias"] = _t(hidden, 4 * hidden), _t(hidden)
    if lidar:
        m = "pts_middle_encoder."
        sd[m + "conv_input.0.weight"] = _t(3, 3, 3, 5, 16)
        _bn(sd, m + "conv_input.1", 16)
        prev = 16
        for i, stage in enumerate(((16, 16, 32), (32, 32, 64), (64, 64, 128), (128, 128))):
            for j, c in enumerate(stage):
                q = f"{m}encoder_layers.encoder_layer{i + 1}.{j}"
                if j == len(stage) - 1 and i < 3:
                    sd[q + ".0.weight"] = _t(3, 3, 3, prev, c)
                    _bn(sd, q + ".1", c)
                else:
                    for n in (1, 2):
                        sd[f"{q}.conv{n}.weight"] = _t(3, 3, 3, c, c)
                        _bn(sd, f"{q}.bn{n}", c)
                prev = c
        sd[m + "conv_out.0.weight"] = _t(3, 1, 1, 128, 128)
        _bn(sd, m + "conv_out.1", 128)
        for i, (cin, cout) in enumerate(((256, 128), (128, 256))):
            for k in range(6):
                sd[f"pts_backbone.blocks.{i}.{3 * k}.weight"] = _t(cout, cin if k == 0 else cout, 3, 3)
                _bn(sd, f"pts_backbone.blocks.{i}.{3 * k + 1}", cout)
        sd["pts_neck.deblocks.0.0.weight"] = _t(256, 128, 1, 1)
        sd["pts_neck.deblocks.1.0.weight"] = _t(256, 256, 2, 2)  # ConvTranspose2d: [C_in, C_out, k, k]
        for i in (0, 1):
            _bn(sd, f"pts_neck.deblocks.{i}.1", 256)
        sd[p + "shared_conv.conv.weight"] = _t(hidden, 512, 3, 3)
        _bn(sd, p + "shared_conv.bn", hidden)
    sd[p + "reference_points.weight"] = torch.rand(900, 3)
    sd[p + "bev_embedding.0.weight"], sd[p + "bev_embedding.0.bias"] = _t(hidden, 2 * hidden), _t(hidden)
    sd[p + "bev_embedding.2.weight"], sd[p + "bev_embedding.2.bias"] = _t(hidden, hidden), _t(hidden)
    d = p + "transformer.decoder."
    for i in range(layers):
        for a in (0, 1):
            q = f"{d}layers.{i}.attentions.{a}.attn."
            sd.update({q + "in_proj_weight": _t(3 * hidden, hidden), q + "in_proj_bias": _t(3 * hidden),
                       q + "out_proj.weight": _t(hidden, hidden), q + "out_proj.bias": _t(hidden)})
        f = f"{d}layers.{i}.ffns.0.layers."
        sd.update({f + "0.0.weight": _t(1024, hidden), f + "0.0.bias": _t(1024), f + "1.weight": _t(hidden, 1024),
                   f + "1.bias": _t(hidden)})
        for n in range(3):
            sd[f"{d}layers.{i}.norms.{n}.weight"], sd[f"{d}layers.{i}.norms.{n}.bias"] = _t(hidden), _t(hidden)
    sd[d + "post_norm.weight"], sd[d + "post_norm.bias"] = _t(hidden), _t(hidden)
    for name, out in HEADS.items():
        h = f"{p}task_heads.0.{name}."
        sd.update({h + "0.weight": _t(64 * layers, hidden, head_kernel), h + "1.weight": _t(64 * layers),
                   h + "1.bias": _t(64 * layers), h + "3.weight": _t(out * layers, 64, head_kernel),
                   h + "3.bias": _t(out * layers)})
    return sd


def _read(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_convert_r50_fusion_checkpoint(tmp_path):
    import json

    from zoo.cli import main

    sd = official_state_dict()
    config = "point_cloud_range = [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0]\nvoxel_size = [0.1, 0.1, 0.2]\n" \
             "        sparse_shape=[41, 1024, 1024],\n"
    torch.save({"meta": {"epoch": 20, "config": config}, "state_dict": sd, "optimizer": {}}, tmp_path / "cmt_r50.pth")
    assert main(["convert", "cmt", "--src", str(tmp_path / "cmt_r50.pth"), "--out", str(tmp_path / "out")]) == 0
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["architecture"] == "cmt_fusion_r50" and cfg["metadata"]["epoch"] == 20
    args = cfg["model_args"]
    assert args["grid_size"] == [1024, 1024, 40] and args["voxel_size"] == [0.1, 0.1, 0.2]
    assert args["lidar_encoder"] == "sparse" and args["head_kernel"] == 1 and args["depth_num"] == 64
    ours = _read(tmp_path / "out")
    assert len(ours) == len(sd)  # every tensor mapped, none dropped
    official = sd["pts_middle_encoder.encoder_layers.encoder_layer3.2.0.weight"]  # [3, 3, 3, 64, 128]
    assert torch.equal(ours["lidar_encoder.encoder_layers.encoder_layer3.2.0.weight"], official.permute(4, 0, 1, 2, 3))
    pairs = {"img_backbone.body.layer3.5.conv2.weight": "img_backbone.layer3.5.conv2.weight",
             "img_neck.fpn_convs.0.bias": "img_neck.fpn_convs.0.conv.bias",
             "shared_conv.1.running_var": "pts_bbox_head.shared_conv.bn.running_var",
             "bev_neck.deblocks.1.0.weight": "pts_neck.deblocks.1.0.weight",
             "decoder.layers.4.cross_attn.in_proj_weight": "pts_bbox_head.transformer.decoder.layers.4.attentions.1.attn.in_proj_weight",
             "decoder.layers.2.ffn.2.weight": "pts_bbox_head.transformer.decoder.layers.2.ffns.0.layers.1.weight",
             "decoder.layers.5.norm3.bias": "pts_bbox_head.transformer.decoder.layers.5.norms.2.bias",
             "encoding.rv_embedding.0.weight": "pts_bbox_head.rv_embedding.0.weight",
             "task_head.height.3.weight": "pts_bbox_head.task_heads.0.height.3.weight"}
    for mine, theirs in pairs.items():
        assert torch.equal(ours[mine], sd[theirs]), mine


def test_converted_sparse_kernel_computes_the_authors_convolution(tmp_path):
    """The converted kernel applied by the zoo's sparse conv equals a dense conv3d with the authors' kernel
    read in its saved [kD, kH, kW, C_in, C_out] layout."""
    from zoo.models.cmt.convert import convert_state_dict
    from zoo.models.cmt.lidar_branch import SparseEncoder

    enc = SparseEncoder(5, (41, 16, 16))
    theirs = torch.randn(3, 3, 3, 5, 16)
    mine = convert_state_dict({"pts_middle_encoder.conv_input.0.weight": theirs},
                              {f"lidar_encoder.{k}": v for k, v in enc.state_dict().items()})
    w = mine["lidar_encoder.conv_input.0.weight"]
    g = torch.Generator().manual_seed(0)
    coords = torch.unique(torch.cat([torch.zeros(30, 1, dtype=torch.long),
                                     torch.stack([torch.randint(0, s, (30,), generator=g) for s in (41, 16, 16)], 1)], 1), dim=0)
    feats = torch.randn(len(coords), 5, generator=g)
    conv = enc.conv_input[0]
    conv.weight.data = w
    y = conv(SparseTensor(feats, coords, (41, 16, 16), 1))
    dense = torch.zeros(1, 5, 41, 16, 16)
    dense[0, :, coords[:, 1], coords[:, 2], coords[:, 3]] = feats.T
    ref = torch.nn.functional.conv3d(dense, theirs.permute(4, 3, 0, 1, 2), padding=1)
    assert torch.allclose(y.features, ref[0, :, coords[:, 1], coords[:, 2], coords[:, 3]].T, atol=1e-5)


def test_convert_lidar_only_checkpoint(tmp_path):
    from zoo.models.cmt.convert import convert

    sd = official_state_dict(camera=False, head_kernel=3)
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}}, tmp_path / "cmt_l.pth")
    out = convert(tmp_path / "cmt_l.pth", tmp_path / "out")
    import json

    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architecture"] == "cmt_lidar_voxel0075" and cfg["model_args"]["head_kernel"] == 3
    assert cfg["model_args"]["voxel_size"] == [0.075, 0.075, 0.2] and "grid_size" not in cfg["model_args"]
    assert not any(k.startswith("encoding.rv_embedding") for k in _read(out))


def test_converter_rejects_what_it_cannot_map(tmp_path):
    from zoo.models.cmt.convert import convert

    sd = official_state_dict(camera=False)
    sd["img_backbone.stem.stem_1/conv.weight"] = torch.zeros(64, 3, 3, 3)  # a VoVNet-99 image branch
    torch.save({"state_dict": sd}, tmp_path / "vov.pth")
    with pytest.raises(ZooError, match="VoVNet"):
        convert(tmp_path / "vov.pth", tmp_path / "o1")
    sd = official_state_dict(camera=False)
    sd["pts_bbox_head.extra.weight"] = torch.zeros(2)
    torch.save({"state_dict": sd}, tmp_path / "extra.pth")
    with pytest.raises(ZooError, match=re.escape("pts_bbox_head.extra.weight")):
        convert(tmp_path / "extra.pth", tmp_path / "o2")
    torch.save({"state_dict": {"backbone.w": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(ZooError, match="not a CMT checkpoint"):
        convert(tmp_path / "other.pth", tmp_path / "o3")
    sd = official_state_dict(camera=False)
    del sd["pts_bbox_head.bev_embedding.2.weight"]
    torch.save({"state_dict": sd}, tmp_path / "cut.pth")
    with pytest.raises(ZooError, match=re.escape("pts_bbox_head.bev_embedding.2.weight missing")):
        convert(tmp_path / "cut.pth", tmp_path / "o4")
    assert not any((tmp_path / f"o{i}").exists() for i in (1, 2, 4))

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


# The authors' VoVNet(spec_name="V-99-eSE"): stem widths, then per stage (2-5) the 3x3 width, output width, blocks.
V99_STEM, V99_STAGES, V99_LAYERS = (64, 64, 128), ((128, 256, 1), (160, 512, 3), (192, 768, 9), (224, 1024, 3)), 5


def official_vovnet(blocks=(1, 3, 9, 3), weight=_t) -> dict:
    """``img_backbone.*`` of the authors' VoVNet (the module names of their DD3D-derived code): a 3-conv stem, then
    OSA blocks of five 3x3 convs, a 1x1 concat conv and an eSE each. ``weight(*shape)`` makes the conv kernels."""
    sd, prev = {}, 3
    for n, c in enumerate(V99_STEM, 1):
        sd[f"img_backbone.stem.stem_{n}/conv.weight"] = weight(c, prev, 3, 3)
        _bn(sd, f"img_backbone.stem.stem_{n}/norm", c)
        prev = c
    for s, ((mid, out, _), count) in enumerate(zip(V99_STAGES, blocks), 2):
        for b in range(1, count + 1):
            q, cin = f"img_backbone.stage{s}.OSA{s}_{b}.", prev
            for i in range(V99_LAYERS):
                sd[f"{q}layers.{i}.OSA{s}_{b}_{i}/conv.weight"] = weight(mid, cin, 3, 3)
                _bn(sd, f"{q}layers.{i}.OSA{s}_{b}_{i}/norm", mid)
                cin = mid
            sd[f"{q}concat.OSA{s}_{b}_concat/conv.weight"] = weight(out, prev + V99_LAYERS * mid, 1, 1)
            _bn(sd, f"{q}concat.OSA{s}_{b}_concat/norm", out)
            sd[f"{q}ese.fc.weight"], sd[f"{q}ese.fc.bias"] = weight(out, out, 1, 1), _t(out)
            prev = out
    return sd


def authors_vovnet_forward(sd: dict, x: torch.Tensor) -> list[torch.Tensor]:
    """The authors' VoVNet-99 in eval mode, computed from their state dict's names alone: [B, 3, H, W] ->
    [stage4 (stride 16), stage5 (stride 32)]. Each conv is followed by BatchNorm and ReLU; stages 3-5 start with
    a 3x3 stride-2 max-pool (ceil mode); every block ends with eSE (1x1 conv on the mean, gate relu6(z + 3) / 6) and
    adds its input when it is not its stage's first."""
    import torch.nn.functional as F

    def conv_bn_relu(x, name, stride=1):
        w, n = sd[f"{name}/conv.weight"], f"{name}/norm."
        x = F.conv2d(x, w, stride=stride, padding=w.shape[-1] // 2)
        x = F.batch_norm(x, sd[n + "running_mean"], sd[n + "running_var"], sd[n + "weight"], sd[n + "bias"])
        return F.relu(x)

    for n, stride in ((1, 2), (2, 1), (3, 2)):
        x = conv_bn_relu(x, f"img_backbone.stem.stem_{n}", stride)
    outs = []
    for s, (_, _, count) in enumerate(V99_STAGES, 2):
        if s > 2:
            x = F.max_pool2d(x, 3, 2, ceil_mode=True)
        for b in range(1, count + 1):
            q, feats = f"img_backbone.stage{s}.OSA{s}_{b}.", [x]
            for i in range(V99_LAYERS):
                feats.append(conv_bn_relu(feats[-1], f"{q}layers.{i}.OSA{s}_{b}_{i}"))
            y = conv_bn_relu(torch.cat(feats, 1), f"{q}concat.OSA{s}_{b}_concat")
            z = F.conv2d(y.mean((2, 3), keepdim=True), sd[q + "ese.fc.weight"], sd[q + "ese.fc.bias"])
            y = y * F.relu6(z + 3) / 6
            x = y + x if b > 1 else y
        outs.append(x)
    return outs[2:]


def official_state_dict(camera=True, lidar=True, head_kernel=1, layers=6, hidden=256, backbone="r50"):
    """The authors' checkpoint keys: R50 800x320 or V2-99 1600x640 fusion (both), CMT-C (camera only, no
    ``shared_conv``: their ``CmtImageHead``), CMT-L (lidar only). Sparse kernels are saved as
    [kD, kH, kW, C_in, C_out] by mmdet3d's spconv-2 hook."""
    sd = {}
    p = "pts_bbox_head."
    if camera:
        import torchvision

        if backbone == "r50":
            sd.update({f"img_backbone.{k}": v for k, v in torchvision.models.resnet50().state_dict().items()
                       if not k.startswith("fc.")})
        else:
            sd.update(official_vovnet())
        for i, c in enumerate((1024, 2048) if backbone == "r50" else (768, 1024)):
            sd[f"img_neck.lateral_convs.{i}.conv.weight"] = _t(256, c, 1, 1)
            sd[f"img_neck.lateral_convs.{i}.conv.bias"] = _t(256)
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


def test_converted_vovnet99_computes_the_authors_backbone():
    """The authors' VoVNet-99 weights, renamed by the converter into the zoo's V2-99 image backbone (timm's
    ese_vovnet99b with an eSE in every block), give the stride-16 and stride-32 maps the authors' network computes
    (`authors_vovnet_forward`); timm's own layout (eSE in each stage's last block only) cannot take them."""
    from zoo.checkpoint import load_state_dict
    from zoo.models.cmt.convert import convert_state_dict
    from zoo.models.cmt.image_branch import ImageBackbone

    torch.manual_seed(0)
    sd = official_vovnet(weight=lambda *shape: torch.randn(*shape) * (2 / (shape[1] * shape[2] * shape[3])) ** 0.5)
    for k in [k for k in sd if k.endswith("/norm.weight")]:  # unit-scale norms, so that the image carries through
        sd[k] = sd[k] + 1
    ours = ImageBackbone("ese_vovnet99b", ese_every_block=True).eval()
    mapped = convert_state_dict(sd, {f"img_backbone.{k}": v for k, v in ours.state_dict().items()})
    load_state_dict(ours, {k.removeprefix("img_backbone."): v for k, v in mapped.items()})
    x = torch.randn(1, 3, 100, 170)  # odd sizes on the way down: the pools' ceil mode counts
    with torch.no_grad():
        got, want = ours(x), authors_vovnet_forward(sd, x)
    assert [tuple(t.shape) for t in got] == [(1, 768, 6, 10), (1, 1024, 3, 5)]  # floor mode: 5x10, 2x4
    for g, w in zip(got, want):
        assert w.std((2, 3)).mean() > 0.1 * w.abs().mean()  # the maps vary over the image
        assert torch.allclose(g, w, rtol=1e-4, atol=1e-4 * w.abs().max())
    with pytest.raises(ZooError, match="attn.fc"):  # 12 blocks' eSE have nowhere to go
        load_state_dict(ImageBackbone("ese_vovnet99b"), {k.removeprefix("img_backbone."): v for k, v in mapped.items()})


@pytest.mark.parametrize("lidar", [True, False], ids=["v299_fusion", "v299_camera"])
def test_convert_v299_checkpoint(tmp_path, lidar):
    import json

    from zoo.cli import main

    sd = official_state_dict(lidar=lidar, backbone="vov99")
    config = ("point_cloud_range = [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]\n"
              "ida_aug_conf = {\n        \"final_dim\": (320, 800),\n")
    torch.save({"meta": {"epoch": 20, "config": config}, "state_dict": sd}, tmp_path / "cmt_vov.pth")
    assert main(["convert", "cmt", "--src", str(tmp_path / "cmt_vov.pth"), "--out", str(tmp_path / "out")]) == 0
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["architecture"] == ("cmt_fusion_vov99" if lidar else "cmt_camera_vov99")
    assert ("voxel_size" in cfg["model_args"]) == lidar and "grid_size" not in cfg["model_args"]
    assert cfg["model_args"]["point_cloud_range"] == [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]  # from meta["config"]
    assert cfg["model_args"]["image_size"] == [320, 800]
    ours = _read(tmp_path / "out")
    assert len(ours) == len(sd)  # every tensor mapped, none dropped
    pairs = {"img_backbone.body.stem_2.bn.running_var": "img_backbone.stem.stem_3/norm.running_var",
             "img_backbone.body.stages_2.blocks.8.conv_mid.4.conv.weight":
                 "img_backbone.stage4.OSA4_9.layers.4.OSA4_9_4/conv.weight",
             "img_backbone.body.stages_3.blocks.0.conv_concat.bn.weight":
                 "img_backbone.stage5.OSA5_1.concat.OSA5_1_concat/norm.weight",
             "img_backbone.body.stages_1.blocks.1.attn.fc.bias": "img_backbone.stage3.OSA3_2.ese.fc.bias",
             "img_neck.lateral_convs.0.weight": "img_neck.lateral_convs.0.conv.weight"}
    for mine, theirs in pairs.items():
        assert torch.equal(ours[mine], sd[theirs]), mine


def test_converter_rejects_what_it_cannot_map(tmp_path):
    from zoo.models.cmt.convert import convert

    sd = {**official_state_dict(camera=False), **official_vovnet(blocks=(1, 1, 2, 2))}  # V-39: not a released config
    torch.save({"state_dict": sd}, tmp_path / "vov.pth")
    with pytest.raises(ZooError, match="VoVNet with 2 blocks in stage4, not VoVNet-99"):
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

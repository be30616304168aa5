"""The authors' CMT checkpoints (mmdet3d 1.0 / mmcv layout) -> zoo folders.

Key mapping (left: the authors' module names, right: `CMT`):

* ``img_backbone.*`` (mmdet ResNet, torchvision names) -> ``img_backbone.body.*`` (timm features);
  VoVNet-99 (the authors' DD3D module names) -> timm's ``ese_vovnet99b`` features with an eSE in every block
  (`ImageBackbone`'s ``ese_every_block``): ``stem.stem_{n}/{conv,norm}`` -> ``stem_{n-1}.{conv,bn}``,
  ``stage{s}.OSA{s}_{b}.layers.{i}.OSA{s}_{b}_{i}/{conv,norm}`` -> ``stages_{s-2}.blocks.{b-1}.conv_mid.{i}.{conv,bn}``,
  ``...concat.OSA{s}_{b}_concat/{conv,norm}`` -> ``...conv_concat.{conv,bn}``, ``...ese.fc`` -> ``...attn.fc``
  ``img_neck.lateral_convs.i.conv`` / ``img_neck.fpn_convs.0.conv`` -> ``img_neck.lateral_convs.i`` / ``fpn_convs.0``
* ``pts_middle_encoder.*`` -> ``lidar_encoder.*``, same structure; sparse-conv kernels are stored by mmdet3d's
  spconv-2 hook as [kD, kH, kW, C_in, C_out] and permuted to spconv 2's [C_out, kD, kH, kW, C_in]
  (a kernel already in that layout is kept; the layout is recognised from the shape)
* ``pts_backbone`` -> ``bev_backbone``; ``pts_neck`` -> ``bev_neck``
* ``pts_bbox_head.shared_conv.{conv,bn}`` -> ``shared_conv.{0,1}``; ``reference_points``;
  ``{bev,rv}_embedding`` -> ``encoding.{bev,rv}_embedding``
* ``...transformer.decoder.layers.i.attentions.{0,1}.attn`` -> ``decoder.layers.i.{self,cross}_attn``
  (packed in-projections unchanged); ``ffns.0.layers.0.0`` / ``ffns.0.layers.1`` -> ``ffn.0`` / ``ffn.2``;
  ``norms.{0,1,2}`` -> ``norm{1,2,3}``; ``transformer.decoder.post_norm`` -> ``decoder.post_norm``
* ``task_heads.0.<branch>`` -> ``task_head.<branch>``: the grouped per-layer convs and the box-code ordering are
  the authors' (see `head`), so no reordering is needed.

The configuration (point range, voxel size, grid, image size: ``final_dim``) is read from the checkpoint's
``meta['config']`` when present, else taken from the released config matching the checkpoint's modules: R50
fusion -> 800x320, voxel 0.1 with the config's 1024-cell grid (its quirk, kept so the outputs match); V2-99 fusion
and CMT-C -> 1600x640, voxel 0.075; LiDAR-only -> voxel 0.075. Camera-only checkpoints (the authors'
``CmtImageHead``, no ``shared_conv``) become the camera-only builders.
"""

from __future__ import annotations

import re
from pathlib import Path


from ...checkpoint import foreign_state_dict, load_state_dict, read_foreign, save_pretrained
from ...errors import ZooError
from ...hub import sha256_file
from ...registry import create_model


def _vov(stage: str, block: str) -> str:
    """The zoo prefix of the authors' VoVNet block ``OSA{stage}_{block}`` (stages 2-5, blocks from 1)."""
    return f"img_backbone.body.stages_{int(stage) - 2}.blocks.{int(block) - 1}."


_NORM = {"conv": "conv", "norm": "bn"}

RULES = (
    (r"^img_backbone\.stem\.stem_(\d)/(conv|norm)\.",
     lambda m: f"img_backbone.body.stem_{int(m.group(1)) - 1}.{_NORM[m.group(2)]}."),
    (r"^img_backbone\.stage(\d)\.OSA\1_(\d+)\.layers\.(\d+)\.OSA\1_\2_\3/(conv|norm)\.",
     lambda m: f"{_vov(m.group(1), m.group(2))}conv_mid.{m.group(3)}.{_NORM[m.group(4)]}."),
    (r"^img_backbone\.stage(\d)\.OSA\1_(\d+)\.concat\.OSA\1_\2_concat/(conv|norm)\.",
     lambda m: f"{_vov(m.group(1), m.group(2))}conv_concat.{_NORM[m.group(3)]}."),
    (r"^img_backbone\.stage(\d)\.OSA\1_(\d+)\.ese\.fc\.", lambda m: f"{_vov(m.group(1), m.group(2))}attn.fc."),
    (r"^img_backbone\.(?!stem\.|stage\d)", "img_backbone.body."),
    (r"^img_neck\.(lateral_convs|fpn_convs)\.(\d+)\.conv\.", r"img_neck.\1.\2."),
    (r"^pts_middle_encoder\.", "lidar_encoder."),
    (r"^pts_backbone\.", "bev_backbone."),
    (r"^pts_neck\.", "bev_neck."),
    (r"^pts_bbox_head\.shared_conv\.conv\.", "shared_conv.0."),
    (r"^pts_bbox_head\.shared_conv\.bn\.", "shared_conv.1."),
    (r"^pts_bbox_head\.reference_points\.", "reference_points."),
    (r"^pts_bbox_head\.(bev_embedding|rv_embedding)\.", r"encoding.\1."),
    (r"^pts_bbox_head\.transformer\.decoder\.layers\.(\d+)\.attentions\.0\.attn\.", r"decoder.layers.\1.self_attn."),
    (r"^pts_bbox_head\.transformer\.decoder\.layers\.(\d+)\.attentions\.1\.attn\.", r"decoder.layers.\1.cross_attn."),
    (r"^pts_bbox_head\.transformer\.decoder\.layers\.(\d+)\.ffns\.0\.layers\.0\.0\.", r"decoder.layers.\1.ffn.0."),
    (r"^pts_bbox_head\.transformer\.decoder\.layers\.(\d+)\.ffns\.0\.layers\.1\.", r"decoder.layers.\1.ffn.2."),
    (r"^pts_bbox_head\.transformer\.decoder\.layers\.(\d+)\.norms\.(\d)\.",
     lambda m: f"decoder.layers.{m.group(1)}.norm{int(m.group(2)) + 1}."),
    (r"^pts_bbox_head\.transformer\.decoder\.post_norm\.", "decoder.post_norm."),
    (r"^pts_bbox_head\.task_heads\.0\.", "task_head."),
)


def map_key(key: str) -> str | None:
    """The zoo name of one of the authors' keys, or None when no rule applies."""
    for pattern, repl in RULES:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    return None


def _config_value(config: str, name: str):
    m = re.search(rf"^{name}\s*=\s*\[([^\]]*)\]", config, re.M)
    return [float(v) for v in m.group(1).split(",") if v.strip()] if m else None


def model_args_for(sd: dict, meta: dict) -> tuple[str, dict]:
    """(registry name, constructor arguments) for a state dict of the authors' keys."""
    camera = any(k.startswith("img_backbone.") for k in sd)
    lidar = any(k.startswith("pts_middle_encoder.") for k in sd)
    vovnet = "img_backbone.stem.stem_1/conv.weight" in sd
    if camera and not vovnet and "img_backbone.layer1.0.conv1.weight" not in sd:
        raise ZooError("the checkpoint's image backbone is neither a ResNet (img_backbone.layer1.*) nor the "
                       "authors' VoVNet (img_backbone.stem.stem_1/*): only ResNet-50 and VoVNet-99 are converted")
    if not (camera or lidar) or "pts_bbox_head.reference_points.weight" not in sd:
        raise ZooError(f"not a CMT checkpoint (first keys: {', '.join(list(sd)[:5])}): expected "
                       f"pts_bbox_head.reference_points and img_backbone.* or pts_middle_encoder.* keys")
    if vovnet:
        concat = r"img_backbone\.stage4\.OSA4_\d+\.concat\.OSA4_\d+_concat/conv\.weight$"
        blocks = sum(1 for k in sd if re.match(concat, k))
        if blocks != 9:
            raise ZooError(f"image backbone is a VoVNet with {blocks} blocks in stage4, not VoVNet-99 (9): only the "
                           f"V2-99 configs are converted")
    elif camera and sum(1 for k in sd if re.match(r"img_backbone\.layer3\.\d+\.conv1\.weight$", k)) != 6:
        raise ZooError("image backbone is a ResNet but not a ResNet-50 (layer3 must have 6 blocks)")
    needed = ["pts_bbox_head.task_heads.0.center.3.weight", "pts_bbox_head.bev_embedding.2.weight",
              "pts_bbox_head.task_heads.0.cls_logits.3.weight"]
    if missing := [k for k in needed if k not in sd]:
        raise ZooError(f"not a complete CMT checkpoint: {', '.join(missing)} missing (the head's task branch and "
                       f"BEV embedding give the model's sizes)")
    head = sd["pts_bbox_head.task_heads.0.center.3.weight"]
    args = {"modalities": [m for m, on in (("camera", camera), ("lidar", lidar)) if on],
            "num_query": sd["pts_bbox_head.reference_points.weight"].shape[0],
            "hidden_dim": sd["pts_bbox_head.bev_embedding.2.weight"].shape[0],
            "num_layers": head.shape[0] // 2, "head_kernel": head.shape[-1],
            "num_classes": sd["pts_bbox_head.task_heads.0.cls_logits.3.weight"].shape[0] // (head.shape[0] // 2)}
    if "pts_bbox_head.rv_embedding.0.weight" in sd:
        args["depth_num"] = sd["pts_bbox_head.rv_embedding.0.weight"].shape[1] // 3
    r50 = camera and not vovnet
    config = meta.get("config") if isinstance(meta.get("config"), str) else ""
    if _config_value(config, "point_cloud_range"):
        args["point_cloud_range"] = _config_value(config, "point_cloud_range")
    final_dim = re.search(r"[\"']final_dim[\"']\s*:\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)", config)
    if camera and final_dim:
        args["image_size"] = [int(v) for v in final_dim.groups()]  # (H, W), as the authors' ida_aug_conf
    if lidar:
        args["lidar_encoder"] = "sparse"
        voxel = [0.1, 0.1, 0.2] if r50 else [0.075, 0.075, 0.2]
        grid = [1024, 1024, 40] if r50 else None  # the R50 config's grid quirk
        voxel = _config_value(config, "voxel_size") or voxel
        shape = re.search(r"sparse_shape\s*=\s*\[\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\]", config)
        if shape:
            z, y, x = (int(v) for v in shape.groups())
            grid = [x, y, z - 1]
        args["voxel_size"] = voxel
        if grid:
            args["grid_size"] = grid
    if not camera:
        return "cmt_lidar_voxel0075", args
    return f"cmt_{'fusion' if lidar else 'camera'}_{'vov99' if vovnet else 'r50'}", args


def convert_state_dict(sd: dict, own: dict) -> dict:
    """Rename every key and permute sparse-conv kernels to the layout of ``own`` (the target state dict)."""
    out, unknown = {}, []
    for k, v in sd.items():
        new = map_key(k)
        if new is None:
            unknown.append(k)
            continue
        if new.startswith("lidar_encoder.") and v.dim() == 5 and new in own and own[new].shape != v.shape:
            if v.permute(4, 0, 1, 2, 3).shape == own[new].shape:
                v = v.permute(4, 0, 1, 2, 3)
        out[new] = v.contiguous()
    if unknown:
        raise ZooError(f"unrecognised keys in the checkpoint ({len(unknown)}): {', '.join(unknown[:8])}"
                       f"{' ...' if len(unknown) > 8 else ''}")
    return out


def convert(src: str | Path, out_dir: str | Path) -> Path:
    """Convert the authors' checkpoint ``src`` into a zoo folder ``out_dir``; returns ``out_dir``."""
    src = Path(src)
    ckpt = read_foreign(src)
    sd = foreign_state_dict(ckpt, src)
    meta = ckpt["meta"] if isinstance(ckpt.get("meta"), dict) else {}  # mmdet's: the training config
    name, args = model_args_for(sd, meta)
    model = create_model(name, **args)
    load_state_dict(model, convert_state_dict(sd, model.state_dict()), source=str(src))
    info = {"converted_from": src.name, "source_sha256": sha256_file(src)}
    info.update({k: meta[k] for k in ("epoch", "iter", "mmcv_version", "mmdet3d_version") if k in meta
                 and isinstance(meta[k], (int, str))})
    return save_pretrained(model, out_dir, metadata=info)

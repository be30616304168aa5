"""CMT: Cross Modal Transformer (Yan et al., ICCV 2023). One class for the fusion, camera-only (CMT-C) and
LiDAR-only (CMT-L) detectors.

Data flow (fusion): six images -> backbone -> CPFPN (stride 16) -> image tokens + ray PE; points -> voxels ->
sparse (or pillar) encoder -> SECOND + SECONDFPN -> shared 3x3 conv -> BEV tokens + BEV PE; memory =
concat(BEV tokens, image tokens); queries: zero content + PE of learnt 3D anchors (BEV part + camera part);
6-layer decoder; per-layer heads; NMS-free top-k decoding. No view transform, no encoder.

Inputs (`CMT.forward`):
    images: [B, N, 3, H, W] normalised (BGR, mean 103.53/116.28/123.675, std 57.375/57.12/58.395), padded to a
        multiple of 32; lidar2img: [B, N, 4, 4] (camera intrinsics @ lidar2cam, augmentations folded in);
    points: list of B tensors [P_i, 5] (x, y, z, intensity, time lag) in the LiDAR frame;
    gt_boxes / gt_labels (training, for query denoising): per sample [n_i, 9] (x, y, z centre, l, w, h, yaw,
        vx, vy) and [n_i].
Output: dict with ``code`` [L, B, Q, 10] and ``logits`` [L, B, Q, C] for the matching queries, ``dn_code`` /
``dn_logits`` [L, B, pad, ...] and ``dn`` (a `DNQueries`) when denoising is on.

Precision under autocast (the trainer's ``bf16-mixed``): the LiDAR branch, the coordinate encodings (geometry and
their MLPs) and the prediction branches run in fp32; the image branch and the decoder's attention and FFN run under
autocast. The authors keep their whole head in fp32 except the flash cross-attention, which casts to fp16.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from ...data.nuscenes import CLASSES
from ...errors import ZooError
from ...registry import check_weights_dtype
from ..sizes import check_bools, check_divisible, check_int_sequence, check_ints, check_positive_sequence
from .denoising import DNQueries, prepare_dn
from .encoding import CoordinateEncoding
from .head import TaskHead, assemble_code, decode_topk, inverse_sigmoid
from .image_branch import CMT_MEAN, CMT_STD, CPFPN, GridMask, ImageBackbone
from .lidar_branch import SECOND, SECONDFPN, PillarEncoder, SparseEncoder, batch_voxelize
from .transformer import Decoder


def has_points(points: torch.Tensor) -> bool:
    """Whether a cloud [P, 5] holds a scan: `ModalMask3D` drops one by multiplying it by 0, and the global
    augmentation then moves all of its points as one, so a dropped cloud is all one point."""
    return bool((points != points[:1]).any())

MODALITIES = ("camera", "lidar")


class CMT(nn.Module):
    """Cross Modal Transformer.

    Args:
        modalities: ``("camera", "lidar")`` (fusion), ``("camera",)`` (CMT-C) or ``("lidar",)`` (CMT-L).
        num_classes: detection classes (10, nuScenes order of `zoo.data.nuscenes.CLASSES`).
        point_cloud_range: (x0, y0, z0, x1, y1, z1) m; box centres, anchors and PEs are normalised by it.
        image_size: (H, W) of the network input (after resize and crop); sweeps: previous LiDAR sweeps per frame;
            both recorded in ``input_spec`` (the data contract, not used by the network).
        img_backbone, img_backbone_args, img_weights_file, img_norm_eval, img_input_norm, img_ese_every_block: the
            timm image backbone (`ImageBackbone`; ``img_input_norm`` is its ``input_norm``, ``img_ese_every_block``
            its ``ese_every_block``: True in the V2-99 builders, as the authors' VoVNet-99).
        img_channels: FPN width (256); grid_mask: GridMask on training images (the fusion configs).
        lidar_encoder: ``sparse`` (the authors' 3D sparse encoder, plain-torch sparse convs) or ``pillar``;
            sparse_backend: ``auto`` (spconv when installed, else plain torch), ``torch`` or ``spconv``;
            lidar_channels: width of the pillar encoder's BEV output (the sparse encoder's is 256);
            bev_skip_empty: frames without points skip the LiDAR branch and get zero BEV features, so the
                branch's BatchNorms take their batch statistics only from frames with points. A frame counts as
                without points when all its points coincide: `ModalMask3D` multiplies them by 0, and the global
                augmentation after it moves them as one. False runs every frame through, as the authors.
            pillar_max_points: the pillar encoder's cap on points per pillar (None: all; see `PillarEncoder`).
        voxel_size: (vx, vy, vz); grid_size: (X, Y, Z) cells, default range / voxel size (the authors' R50 config
            declares 1024 for a 1080-cell range, a quirk the converter reproduces for its checkpoints).
        max_points_per_voxel, max_voxels: hard voxelisation limits (10; 120 000 train / 160 000 test).
        bev_channels, bev_layer_nums, bev_layer_strides, bev_up_channels, bev_up_strides: SECOND + SECONDFPN.
        downsample_scale: the pillar encoder's BEV stride in voxels (8; a power of 2); the sparse encoder's is its
            three stride-2 stages, 8, and it ignores this.
        hidden_dim, num_query, depth_num, num_layers, num_heads, ffn_dim, dropout: the transformer.
        head_conv, head_kernel: head branches (64; 1, or 3 in the authors' LiDAR-only config); head_init: the
            heads' initialisation, ``pytorch`` (what the authors' code runs) or ``declared`` (what their head's
            unreached ``init_weights`` declares; the zoo's until 2026-12-06), see `TaskHead`.
        dn_groups, dn_noise_scale, dn_split: query denoising (0 groups disables it).
        max_num, post_center_range: decoding.
    """

    def __init__(self, modalities=MODALITIES, num_classes: int = 10, point_cloud_range=(-54.0, -54.0, -5.0, 54.0, 54.0, 3.0),
                 image_size=(320, 800), sweeps: int = 10, img_backbone: str = "resnet50",
                 img_backbone_args: dict[str, Any] | None = None,
                 img_weights_file: str | None = None, img_norm_eval: bool = True,
                 img_input_norm: tuple | None = None, img_ese_every_block: bool = False, img_channels: int = 256,
                 grid_mask: bool = True, lidar_encoder: str = "sparse", sparse_backend: str = "auto",
                 lidar_channels: int = 256, pillar_max_points: int | None = None, bev_skip_empty: bool = False,
                 voxel_size=(0.1, 0.1, 0.2),
                 grid_size=None, max_points_per_voxel: int = 10, max_voxels=(120000, 160000),
                 bev_channels=(128, 256), bev_layer_nums=(5, 5), bev_layer_strides=(1, 2),
                 bev_up_channels=(256, 256), bev_up_strides=(1, 2), downsample_scale: int = 8,
                 hidden_dim: int = 256, num_query: int = 900, depth_num: int = 64, num_layers: int = 6,
                 num_heads: int = 8, ffn_dim: int = 1024, dropout: float = 0.1, head_conv: int = 64,
                 head_kernel: int = 1, head_init: str = "pytorch", dn_groups: int = 10, dn_noise_scale: float = 1.0,
                 dn_split: float = 0.75,
                 max_num: int = 300, post_center_range=(-61.2, -61.2, -10.0, 61.2, 61.2, 10.0)):
        super().__init__()
        modalities = tuple(modalities)
        if not modalities or any(m not in MODALITIES for m in modalities):
            raise ZooError(f"modalities must be a non-empty subset of {MODALITIES}, got {modalities}")
        if lidar_encoder not in ("sparse", "pillar"):
            raise ZooError(f"lidar_encoder must be 'sparse' or 'pillar', got {lidar_encoder!r}")
        check_ints(num_classes=num_classes, hidden_dim=hidden_dim, num_heads=num_heads, num_layers=num_layers,
                   num_query=num_query, depth_num=depth_num, ffn_dim=ffn_dim, head_conv=head_conv,
                   head_kernel=head_kernel, max_num=max_num, max_points_per_voxel=max_points_per_voxel,
                   lidar_channels=lidar_channels, pillar_max_points=pillar_max_points)
        check_ints(0, sweeps=sweeps, dn_groups=dn_groups)
        check_bools(img_norm_eval=img_norm_eval, img_ese_every_block=img_ese_every_block, grid_mask=grid_mask,
                    bev_skip_empty=bev_skip_empty)
        if not isinstance(img_backbone, str):
            raise ValueError(f"img_backbone must be a backbone name (a string), got {img_backbone!r}")
        check_divisible("hidden_dim", hidden_dim, "num_heads", num_heads)
        if hidden_dim % 2:
            raise ValueError(f"hidden_dim must be even (the BEV sine embedding pairs its channels), got {hidden_dim}")
        if head_kernel % 2 == 0:
            raise ValueError(f"head_kernel must be odd (the head's convolutions keep the query count), got "
                             f"{head_kernel}")
        if lidar_encoder == "pillar":
            check_ints(downsample_scale=downsample_scale)
            if downsample_scale < 2 or downsample_scale & (downsample_scale - 1):
                raise ValueError(f"downsample_scale must be a power of 2 of at least 2 (the pillar encoder's BEV "
                                 f"stride in voxels), got {downsample_scale}")
            if lidar_channels < downsample_scale // 4:
                raise ValueError(f"lidar_channels must be at least {downsample_scale // 4} for downsample_scale "
                                 f"{downsample_scale} (the pillar encoder halves it for each stage before the last), "
                                 f"got {lidar_channels}")
        check_int_sequence("image_size", image_size, length=2)
        check_positive_sequence("voxel_size", voxel_size, length=3)
        if grid_size is not None:
            check_int_sequence("grid_size", grid_size, length=3)
        check_int_sequence("max_voxels", max_voxels, length=2)
        lows, highs = tuple(point_cloud_range)[:3], tuple(point_cloud_range)[3:]
        if len(point_cloud_range) != 6 or not all(lo < hi for lo, hi in zip(lows, highs)):
            raise ValueError(f"point_cloud_range must be (x0, y0, z0, x1, y1, z1) with x0 < x1, y0 < y1 and z0 < z1, "
                             f"got {point_cloud_range!r}")
        bev = {"bev_channels": bev_channels, "bev_layer_nums": bev_layer_nums, "bev_layer_strides": bev_layer_strides,
               "bev_up_channels": bev_up_channels, "bev_up_strides": bev_up_strides}
        for name, values in bev.items():
            check_int_sequence(name, values, minimum=0 if name == "bev_layer_nums" else 1)
        if len({len(values) for values in bev.values()}) > 1:
            raise ValueError(f"{', '.join(bev)} must have one entry per SECOND stage each, got "
                             f"{', '.join(f'{name}={values!r}' for name, values in bev.items())}")
        self.modalities, self.num_classes = modalities, num_classes
        self.pc_range = tuple(float(v) for v in point_cloud_range)
        self.voxel_size = tuple(float(v) for v in voxel_size)
        extent = np.array(self.pc_range[3:]) - np.array(self.pc_range[:3])
        self.grid_size = tuple(int(v) for v in (grid_size or np.round(extent / np.array(self.voxel_size))))
        self.max_points, self.max_voxels = max_points_per_voxel, tuple(max_voxels)
        self.downsample_scale, self.lidar_encoder_kind = downsample_scale, lidar_encoder
        self.bev_skip_empty = bev_skip_empty
        self.hidden_dim, self.num_query, self.max_num = hidden_dim, num_query, max_num
        self.dn_groups, self.dn_noise_scale, self.dn_split = dn_groups, dn_noise_scale, dn_split
        self.post_center_range = tuple(post_center_range)
        self.input_spec = {"image_size": list(image_size), "sweeps": sweeps, "num_cams": 6, "mean": list(CMT_MEAN),
                           "std": list(CMT_STD), "channel_order": "BGR", "pad_divisor": 32,
                           "point_features": ["x", "y", "z", "intensity", "time_lag"], "classes": list(CLASSES)[:num_classes],
                           "modalities": list(modalities)}

        if "camera" in modalities:
            self.img_backbone = ImageBackbone(img_backbone, norm_eval=img_norm_eval, weights_file=img_weights_file,
                                              backbone_args=img_backbone_args, input_norm=img_input_norm,
                                              ese_every_block=img_ese_every_block)
            self.img_neck = CPFPN(self.img_backbone.channels, img_channels)
            self.grid_mask = GridMask() if grid_mask else None
            if img_channels != hidden_dim:
                raise ZooError(f"img_channels ({img_channels}) must equal hidden_dim ({hidden_dim})")
        if "lidar" in modalities:
            x, y, z = self.grid_size
            if lidar_encoder == "sparse":
                self.lidar_encoder = SparseEncoder(5, (z + 1, y, x), backend=sparse_backend)
            else:
                self.lidar_encoder = PillarEncoder(5, 64, (x // 2, y // 2), (2 * self.voxel_size[0], 2 * self.voxel_size[1]),
                                                   self.pc_range, lidar_channels, int(math.log2(downsample_scale // 2)),
                                                   pillar_max_points)
            self.bev_backbone = SECOND(self.lidar_encoder.out_channels, bev_channels, bev_layer_nums, bev_layer_strides)
            self.bev_neck = SECONDFPN(bev_channels, bev_up_channels, bev_up_strides)
            self.shared_conv = nn.Sequential(nn.Conv2d(sum(bev_up_channels), hidden_dim, 3, padding=1, bias=False),
                                             nn.BatchNorm2d(hidden_dim), nn.ReLU(inplace=True))
        self.reference_points = nn.Embedding(num_query, 3)
        nn.init.uniform_(self.reference_points.weight, 0, 1)
        self.encoding = CoordinateEncoding(hidden_dim, depth_num, self.pc_range, with_camera="camera" in modalities)
        self.decoder = Decoder(num_layers, hidden_dim, num_heads, ffn_dim, dropout)
        for m in self.decoder.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        self.task_head = TaskHead(hidden_dim, num_classes, num_layers, head_conv, head_kernel, head_init)

    # ---- features -------------------------------------------------------------------------------------------

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """[B, N, 3, H, W] -> stride-16 features [B, N, C, H/16, W/16]."""
        b, n = images.shape[:2]
        x = images.flatten(0, 1)
        if self.grid_mask is not None:
            x = self.grid_mask(x)
        feats = self.img_neck(self.img_backbone(x))
        return feats.view(b, n, *feats.shape[1:])

    def bev_features(self, points: list[torch.Tensor]) -> torch.Tensor:
        """Points -> BEV map [B, hidden, Y/8, X/8] (run in fp32, as the authors). With ``bev_skip_empty``, frames
        without points skip the LiDAR branch (its BatchNorms see only frames with points) and get zeros."""
        with torch.autocast(points[0].device.type, enabled=False):
            points = [p.float() for p in points]
            if not self.bev_skip_empty:
                return self._lidar_branch(points)
            kept_mask = torch.tensor([has_points(p) for p in points], device=points[0].device)
            if kept_mask.any():
                kept = self._lidar_branch([p for p, h in zip(points, kept_mask.tolist()) if h])
            else:  # nothing to learn from: one pass without gradients or BatchNorm updates, for the map's shape
                kept = self._frozen_lidar_pass(points[:1])[:0]
            return kept.new_zeros((len(points),) + kept.shape[1:]).index_copy(0, kept_mask.nonzero()[:, 0], kept)

    def _lidar_branch(self, points: list[torch.Tensor]) -> torch.Tensor:
        """fp32 points (list of [P_i, 5]) -> voxels or pillars -> encoder -> SECOND -> FPN -> shared conv."""
        if self.lidar_encoder_kind == "sparse":
            voxels, num, coords = batch_voxelize(points, self.pc_range, self.voxel_size, self.grid_size,
                                                 self.max_points, self.max_voxels[0 if self.training else 1])
            feats = voxels.sum(1) / num.clamp_min(1)[:, None].to(voxels)  # HardSimpleVFE
            x = self.lidar_encoder(feats, coords, len(points))
        else:
            x = self.lidar_encoder(points)
        return self.shared_conv(self.bev_neck(self.bev_backbone(x)))

    def _frozen_lidar_pass(self, points: list[torch.Tensor]) -> torch.Tensor:
        """The LiDAR branch in eval mode and without gradients; the branch's train/eval modes are restored."""
        branch = [self.lidar_encoder, self.bev_backbone, self.bev_neck, self.shared_conv]
        modes = [m.training for b in branch for m in b.modules()]
        try:
            for b in branch:
                b.eval()
            with torch.no_grad():
                return self._lidar_branch(points)
        finally:
            for m, mode in zip((m for b in branch for m in b.modules()), modes):
                m.training = mode

    # ---- forward --------------------------------------------------------------------------------------------

    def _check(self, images, points, lidar2img):
        """One `ZooError` naming the fix for inputs `forward` cannot take: a modality's input missing, images not
        float [B, N, 3, H, W] (H, W multiples of 16) in the image branch's dtype (unless autocast is on), lidar2img
        not [B, N, 4, 4], points not B clouds [P_i, 5]."""
        if "camera" in self.modalities:
            if images is None or lidar2img is None:
                raise ZooError("this CMT model uses cameras: pass images [B, N, 3, H, W] and lidar2img [B, N, 4, 4]")
            if images.dim() != 5 or images.shape[2] != 3 or lidar2img.shape != (*images.shape[:2], 4, 4):
                hint = (" (one frame: add the batch dimension, images[None], lidar2img[None])" if images.dim() == 4
                        else "")
                raise ZooError(f"images must be [B, N, 3, H, W] and lidar2img [B, N, 4, 4]; got "
                               f"{tuple(images.shape)} and {tuple(lidar2img.shape)}{hint}")
            if images.shape[-2] % 16 or images.shape[-1] % 16:
                raise ZooError(f"image size {tuple(images.shape[-2:])} must be a multiple of 16 (pad to 32)")
            if not images.is_floating_point():
                raise ZooError(f"images must be float, normalised with input_spec's mean and std (BGR, 0-255 "
                               f"scale); got {images.dtype} (for 0-255 BGR pixels: (images.float() - mean) / std)")
            weight = next(self.img_backbone.parameters())
            check_weights_dtype(images, weight, "the image branch's", "images are", "images")
        if "lidar" in self.modalities:
            if points is None or not len(points) or any(p.dim() != 2 or p.shape[1] < 5 for p in points):
                raise ZooError("this CMT model uses LiDAR: pass points as a list of B tensors [P_i, 5] (x, y, z, "
                               "intensity, time lag; P_i may be 0)")
            if "camera" in self.modalities and len(points) != len(images):
                raise ZooError(f"points holds {len(points)} clouds for {len(images)} frames of images: pass one "
                               f"cloud [P_i, 5] per frame of images [B, N, 3, H, W]")

    def forward(self, images: torch.Tensor | None = None, points: list[torch.Tensor] | None = None,
                lidar2img: torch.Tensor | None = None, gt_boxes: list[torch.Tensor] | None = None,
                gt_labels: list[torch.Tensor] | None = None) -> dict:
        """One batch of B frames.

        Args:
            images: [B, N, 3, H, W] normalised camera images (N = 6 for nuScenes; H, W multiples of 16).
            points: B tensors [P_i, 5] (x, y, z, intensity, time lag) in the LiDAR frame.
            lidar2img: [B, N, 4, 4] with every image and 3D augmentation folded in.
            gt_boxes, gt_labels: B tensors [G_i, 9] (x, y, z gravity centre, l, w, h, yaw, vx, vy) and [G_i];
                in training they add the denoising queries.
        Returns:
            ``{"code": [L, B, Q, 10], "logits": [L, B, Q, C]}`` per decoder layer (box code in the authors'
            ordering, see `head.assemble_code`), plus ``dn_code`` [L, B, pad, 10], ``dn_logits`` and ``dn`` (the
            `DNQueries`) when denoising queries were added.
        """
        self._check(images, points, lidar2img)
        memory, memory_pos = [], []
        batch = len(points) if points is not None and "lidar" in self.modalities else images.shape[0]
        if "lidar" in self.modalities:
            bev = self.bev_features(points)
            b, c, h, w = bev.shape
            memory.append(bev.flatten(2).transpose(1, 2))
            memory_pos.append(self.encoding.bev_pe(h, w, bev.device)[None].expand(b, -1, -1))
        l2i = i2l = pad_hw = None
        if "camera" in self.modalities:
            feats = self.image_features(images)  # [B, N, C, h, w]
            b, n, c, h, w = feats.shape
            pad_hw = tuple(images.shape[-2:])
            l2i = lidar2img.float()
            try:
                i2l = torch.linalg.inv(lidar2img.double()).float()
            except torch.linalg.LinAlgError:
                raise ZooError("lidar2img holds a singular matrix: each lidar2img[b, n] [4, 4] must be invertible "
                               "(camera intrinsics @ lidar2cam)") from None
            memory.append(feats.permute(0, 1, 3, 4, 2).reshape(b, n * h * w, c))
            memory_pos.append(self.encoding.image_pe((h, w), pad_hw, i2l).reshape(b, n * h * w, -1))
        memory, memory_pos = torch.cat(memory, 1), torch.cat(memory_pos, 1)

        anchors = self.reference_points.weight
        if self.training and self.dn_groups > 0 and gt_boxes is not None:
            dn = prepare_dn(anchors, gt_boxes, gt_labels, self.pc_range, self.num_classes, self.dn_groups,
                            self.dn_noise_scale, self.dn_split)
        else:
            dn = DNQueries(anchors[None].expand(batch, -1, -1), None, 0, *([None] * 4))
        query_pos = self.encoding.query_pe(inverse_sigmoid(dn.anchors).sigmoid(), l2i, i2l, pad_hw)
        hidden = torch.nan_to_num(self.decoder(query_pos, memory.to(query_pos.dtype), memory_pos.to(query_pos.dtype),
                                               dn.attn_mask))
        with torch.autocast(hidden.device.type, enabled=False):  # the box code in fp32, as the authors' head
            branches = self.task_head(hidden.float())
        code = assemble_code(branches, dn.anchors, self.pc_range)
        logits = branches["cls_logits"]
        p = dn.pad_size
        out = {"code": code[:, :, p:], "logits": logits[:, :, p:]}
        if p:
            out.update(dn_code=code[:, :, :p], dn_logits=logits[:, :, :p], dn=dn)
        return out

    @torch.no_grad()
    def predict(self, images=None, points=None, lidar2img=None) -> list[dict]:
        """Detections per sample: ``{"boxes": [K, 9], "scores": [K], "labels": [K]}`` (top ``max_num``)."""
        out = self.forward(images, points, lidar2img)
        return decode_topk(out["code"][-1].float(), out["logits"][-1].float(), self.max_num, self.post_center_range)


# ---- builders (registry names) ---------------------------------------------------------------------------------

_R50_800x320 = dict(image_size=(320, 800), img_backbone="resnet50", voxel_size=(0.1, 0.1, 0.2))
_V299_1600x640 = dict(image_size=(640, 1600), img_backbone="ese_vovnet99b", img_ese_every_block=True,
                      voxel_size=(0.075, 0.075, 0.2))


def cmt_fusion_r50(**kwargs) -> CMT:
    """CMT R50 800x320, voxel 0.1 (paper: 67.9 mAP / 70.8 NDS on nuScenes val with the sparse encoder)."""
    return CMT(**{**_R50_800x320, "modalities": ("camera", "lidar"), **kwargs})


def cmt_fusion_vov99(**kwargs) -> CMT:
    """CMT V2-99 1600x640, voxel 0.075 (paper: 70.3 mAP / 72.9 NDS val)."""
    return CMT(**{**_V299_1600x640, "modalities": ("camera", "lidar"), **kwargs})


def cmt_camera_vov99(**kwargs) -> CMT:
    """CMT-C, V2-99 1600x640 (paper: 40.6 mAP / 46.0 NDS val); no GridMask, as the authors' camera config."""
    return CMT(**{**_V299_1600x640, "modalities": ("camera",), "grid_mask": False, **kwargs})


def cmt_camera_r50(**kwargs) -> CMT:
    """CMT-C with the R50 800x320 image branch (no published number)."""
    return CMT(**{**_R50_800x320, "modalities": ("camera",), "grid_mask": False, **kwargs})


def cmt_lidar_voxel0075(**kwargs) -> CMT:
    """CMT-L, voxel 0.075 (paper: 62.1 mAP / 68.6 NDS val); head kernel 3 as the authors' LiDAR config."""
    return CMT(**{"modalities": ("lidar",), "voxel_size": (0.075, 0.075, 0.2), "head_kernel": 3, **kwargs})


def cmt_tiny(**kwargs) -> CMT:
    """A narrow CMT for CPU experiments: +-32 m, pillar encoder, narrow ResNet-18 at 256x96, 2-layer 128-wide
    decoder, 200 queries (see configs/cmt/*_synthetic.yaml). ``modalities`` selects the variant."""
    base = dict(point_cloud_range=(-32.0, -32.0, -3.0, 32.0, 32.0, 3.0), image_size=(96, 256), sweeps=2,
                img_backbone="resnet18", img_backbone_args={"channels": [16, 32, 64, 128], "stem_width": 16},
                img_norm_eval=False, img_channels=128, lidar_encoder="pillar", lidar_channels=64,
                voxel_size=(0.2, 0.2, 0.2),
                max_voxels=(30000, 30000), bev_channels=(64, 128), bev_layer_nums=(2, 2), bev_up_channels=(128, 128),
                hidden_dim=128, num_query=200, depth_num=32, num_layers=2, num_heads=4, ffn_dim=256, max_num=200)
    return CMT(**{**base, **kwargs})


def cmt_tiny_lite0(**kwargs) -> CMT:
    """`cmt_tiny` with EfficientNet-Lite0 as its image backbone, norms frozen (``img_norm_eval``), so that it can
    start from ImageNet weights (the only ones to be had here: the module's ``img_imagenet``), as the authors'
    models start from pretrained image backbones. Same LiDAR branch and transformer as `cmt_tiny`."""
    base = dict(img_backbone="tf_efficientnet_lite0", img_backbone_args={}, img_norm_eval=True,
                img_input_norm=((0.5,) * 3, (0.5,) * 3))
    return cmt_tiny(**{**base, **kwargs})

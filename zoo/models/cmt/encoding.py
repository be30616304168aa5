"""CMT's coordinate encodings: image tokens (camera rays sampled at depth bins), BEV tokens (a 2D sine embedding
of the cell centre) and the position-guided queries (both encodings of a 3D anchor point).

All positions are normalised by the point-cloud range ``pc_range`` = (x0, y0, z0, x1, y1, z1) to about [0, 1]
(no clamping, as the authors). Depth bins: d_i = 1 + i * (x1 - 1) / D, i = 0..D-1 (1 m to about 53 m for D = 64).

The encodings run in fp32 even under autocast (`CoordinateEncoding` turns it off): in bf16 a ray point 50 m out is
off by metres and a projected anchor near a camera by hundreds of pixels, and the authors keep their whole box
head, which holds these encodings, in fp32.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn


def pos2embed(pos: torch.Tensor, num_pos_feats: int = 128) -> torch.Tensor:
    """The authors' sine embedding of (x, y) in [0, 1]: [..., >=2] -> [..., 2 * num_pos_feats] (y part first).

    Quirk kept for checkpoint compatibility: the frequencies divide by ``2 * floor(k / 2) / num_pos_feats + 1``
    instead of DETR's ``temperature ** (2 * floor(k / 2) / num_pos_feats)``; sin and cos alternate.
    """
    pos = pos * (2 * math.pi)
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=pos.device)
    dim_t = 2 * torch.div(dim_t, 2, rounding_mode="floor") / num_pos_feats + 1
    pos_x = pos[..., 0, None] / dim_t
    pos_y = pos[..., 1, None] / dim_t
    pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=-1).flatten(-2)
    pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=-1).flatten(-2)
    return torch.cat((pos_y, pos_x), dim=-1)


def bev_coords(height: int, width: int, device=None) -> torch.Tensor:
    """Normalised BEV cell centres [(H * W), 2] as (x, y) = ((j + 0.5) / W, (i + 0.5) / H), row-major (i, j)."""
    i, j = torch.meshgrid(torch.arange(height, device=device, dtype=torch.float32),
                          torch.arange(width, device=device, dtype=torch.float32), indexing="ij")
    return torch.stack([(j + 0.5) / width, (i + 0.5) / height], -1).view(-1, 2)


def depth_bins(depth_num: int, pc_range, device=None) -> torch.Tensor:
    """[D] depths of the camera-ray samples: 1 + i * (x1 - 1) / D."""
    return 1 + torch.arange(depth_num, device=device, dtype=torch.float32) * (pc_range[3] - 1) / depth_num


def _normalise(xyz: torch.Tensor, pc_range) -> torch.Tensor:
    lo = xyz.new_tensor(pc_range[:3])
    return (xyz - lo) / (xyz.new_tensor(pc_range[3:]) - lo)


def ray_points(pixels: torch.Tensor, img2lidar: torch.Tensor, depths: torch.Tensor, pc_range) -> torch.Tensor:
    """Points along camera rays, normalised: pixels [..., 2] (u, v), img2lidar [..., 4, 4] (broadcast with the
    pixels' leading dims), depths [D] -> [..., D * 3] (the D points' normalised x, y, z, depth-major)."""
    uvd = torch.cat([pixels[..., None, :] * depths[:, None], depths[:, None].expand(*pixels.shape[:-1], -1, 1),
                     torch.ones_like(pixels[..., None, :1]).expand(*pixels.shape[:-1], len(depths), 1)], -1)
    xyz = torch.einsum("...dk,...ck->...dc", uvd, img2lidar)[..., :3]
    return _normalise(xyz, pc_range).flatten(-2)


def _as_fp32(x):
    return x.float() if torch.is_tensor(x) else x


def _fp32(method):
    """Run a `CoordinateEncoding` method with autocast off and its tensor arguments in fp32."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        device = next(self.parameters()).device
        with torch.autocast(device.type, enabled=False):
            return method(self, *(_as_fp32(a) for a in args), **{k: _as_fp32(v) for k, v in kwargs.items()})
    return wrapper


class CoordinateEncoding(nn.Module):
    """The PE MLPs and their inputs.

    ``bev_embedding``: Linear(2 * hidden, hidden) -> ReLU -> Linear(hidden, hidden), over `pos2embed` (BEV
    tokens and the BEV part of the query PE). ``rv_embedding`` (camera models only): Linear(3 * D, 4 * hidden)
    -> ReLU -> Linear(4 * hidden, hidden), over `ray_points` (image tokens and the camera part of the query PE).
    Every encoding is computed in fp32 with autocast off, geometry and MLPs, and returned in fp32.
    """

    def __init__(self, hidden_dim: int = 256, depth_num: int = 64, pc_range=(-54, -54, -5, 54, 54, 3),
                 with_camera: bool = True):
        super().__init__()
        self.hidden_dim, self.depth_num, self.pc_range = hidden_dim, depth_num, tuple(pc_range)
        self.bev_embedding = nn.Sequential(nn.Linear(hidden_dim * 2, hidden_dim), nn.ReLU(inplace=True),
                                           nn.Linear(hidden_dim, hidden_dim))
        self.rv_embedding = (nn.Sequential(nn.Linear(depth_num * 3, hidden_dim * 4), nn.ReLU(inplace=True),
                                           nn.Linear(hidden_dim * 4, hidden_dim)) if with_camera else None)

    @_fp32
    def bev_pe(self, height: int, width: int, device=None) -> torch.Tensor:
        """PE of the BEV tokens: [(H * W), hidden]."""
        return self.bev_embedding(pos2embed(bev_coords(height, width, device), self.hidden_dim))

    @_fp32
    def image_pe(self, feat_hw: tuple[int, int], pad_hw: tuple[int, int], img2lidar: torch.Tensor) -> torch.Tensor:
        """PE of the image tokens: feature map (h, w), padded image (H, W), img2lidar [B, N, 4, 4] ->
        [B, N, h, w, hidden]. Token (i, j) is the pixel (j * W / w, i * H / h) (cell corner, as the authors)."""
        h, w = feat_hw
        dev = img2lidar.device
        v = torch.arange(h, device=dev, dtype=torch.float32) * pad_hw[0] / h
        u = torch.arange(w, device=dev, dtype=torch.float32) * pad_hw[1] / w
        vv, uu = torch.meshgrid(v, u, indexing="ij")
        pixels = torch.stack([uu, vv], -1)  # [h, w, 2]
        depths = depth_bins(self.depth_num, self.pc_range, dev)
        pts = ray_points(pixels[None, None], img2lidar[:, :, None, None], depths, self.pc_range)
        return self.rv_embedding(pts)

    @_fp32
    def query_pe(self, anchors: torch.Tensor, lidar2img: torch.Tensor | None, img2lidar: torch.Tensor | None,
                 pad_hw: tuple[int, int] | None) -> torch.Tensor:
        """PE of the position-guided queries: anchors [B, Q, 3] in [0, 1] -> [B, Q, hidden].

        BEV part: `bev_embedding` of the anchor's (x, y). Camera part (with ``lidar2img`` [B, N, 4, 4]): the anchor
        in metres is projected into every camera; where it lands in front of the camera and inside the padded
        image, the ray through that pixel is encoded like an image token; the parts are summed over cameras.
        """
        pe = self.bev_embedding(pos2embed(anchors, self.hidden_dim))
        if lidar2img is None or self.rv_embedding is None:
            return pe
        lo, hi = anchors.new_tensor(self.pc_range[:3]), anchors.new_tensor(self.pc_range[3:])
        xyz = anchors * (hi - lo) + lo
        proj = torch.einsum("bqk,bnck->bnqc", torch.cat([xyz, torch.ones_like(xyz[..., :1])], -1), lidar2img)
        depth = proj[..., 2:3].detach()
        front = depth > 0
        uv = proj[..., :2] / (depth + front * 1e-6 - (~front) * 1e-6)  # depth as a constant, as the authors
        visible = (front[..., 0] & (uv[..., 0] >= 0) & (uv[..., 0] < pad_hw[1]) & (uv[..., 1] >= 0)
                   & (uv[..., 1] < pad_hw[0]))
        depths = depth_bins(self.depth_num, self.pc_range, anchors.device)
        b, n, q = visible.nonzero(as_tuple=True)  # only (camera, query) pairs that see the anchor: same sum
        rays = ray_points(uv[b, n, q], img2lidar[b, n], depths, self.pc_range)  # [V, D * 3]
        cam = pe.new_zeros(pe.shape).index_put_((b, q), self.rv_embedding(rays).to(pe.dtype), accumulate=True)
        return pe + cam

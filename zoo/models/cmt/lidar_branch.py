"""LiDAR branch of CMT: hard voxelisation in plain torch, a 3D sparse encoder (mmdet3d ``SparseEncoder``,
basic-block variant) or a plain-torch pillar encoder, then SECOND and SECONDFPN to a 512-channel BEV map.

Both encoders return the same dense BEV tensor ([B, 256, H/8, W/8] of the voxel grid), so the 2D stack and the
head do not depend on the choice:

* ``sparse``: mean voxel features (HardSimpleVFE) -> sparse convolutions (`sparse_conv`; spconv-2 weight layout,
  so the authors' weights load) -> dense, z folded into channels. The authors' encoder.
* ``pillar``: a dynamic PointPillars encoder (per-pillar PointNet over all points of pillars of 2 x 2 voxels),
  scattered into a BEV canvas, then stride-2 2D conv stages to the same BEV stride. A substitute that needs no sparse convolutions; it is
  not in the paper (the authors report a pillar variant only in an early README: -6 mAP vs voxels).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ...errors import MissingDependency, ZooError
from .sparse_conv import SparseBatchNorm, SparseConv3d, SparseReLU, SparseTensor


def rank_in_group(group: torch.Tensor) -> torch.Tensor:
    """group [P] int64 -> [P]: how many earlier elements share each element's group (0 for the first of a group)."""
    order = torch.argsort(group, stable=True)
    ordered = group[order]
    rank = torch.empty_like(group)
    rank[order] = torch.arange(len(group), device=group.device) - torch.searchsorted(ordered, ordered)
    return rank


def voxelize(points: torch.Tensor, pc_range, voxel_size, grid_size, max_points: int, max_voxels: int):
    """Hard voxelisation (as spconv's ``PointToVoxel``): voxels in order of their first point, at most
    ``max_points`` points per voxel (the first ones), at most ``max_voxels`` voxels.

    Args:
        points: [P, C] (x, y, z, ...); pc_range: (x0, y0, z0, x1, y1, z1); voxel_size: (vx, vy, vz);
        grid_size: (X, Y, Z) cells (points outside the grid are dropped).
    Returns:
        voxels [V, max_points, C] (zero padded), num_points [V], coords [V, 3] int64 as (z, y, x).
    """
    device = points.device
    lo = torch.tensor(pc_range[:3], device=device, dtype=points.dtype)
    vs = torch.tensor(voxel_size, device=device, dtype=points.dtype)
    grid = torch.tensor(grid_size, device=device)
    cell = torch.floor((points[:, :3] - lo) / vs).long()
    inside = ((cell >= 0) & (cell < grid)).all(1)
    points, cell = points[inside], cell[inside]
    key = (cell[:, 2] * grid[1] + cell[:, 1]) * grid[0] + cell[:, 0]
    uniq, inverse = torch.unique(key, return_inverse=True)
    first = torch.full((len(uniq),), len(key), device=device, dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(len(key), device=device), reduce="amin")
    rank_of_voxel = torch.empty_like(first)
    rank_of_voxel[torch.argsort(first)] = torch.arange(len(first), device=device)
    vid = rank_of_voxel[inverse]  # voxel id of each point, in first-appearance order
    slot = rank_in_group(vid)
    keep = (slot < max_points) & (vid < max_voxels)
    n_vox = min(len(uniq), max_voxels)
    voxels = points.new_zeros(n_vox, max_points, points.shape[1])
    voxels[vid[keep], slot[keep]] = points[keep]
    num_points = torch.bincount(vid[keep], minlength=n_vox)
    coords = torch.empty(n_vox, 3, dtype=torch.long, device=device)
    coords[vid[keep]] = cell[keep].flip(1)
    return voxels, num_points, coords


def batch_voxelize(points: list[torch.Tensor], pc_range, voxel_size, grid_size, max_points, max_voxels):
    """`voxelize` every sample; coords get the batch index prepended: [V, 4] (b, z, y, x)."""
    voxels, nums, coords = [], [], []
    for b, p in enumerate(points):
        v, n, c = voxelize(p, pc_range, voxel_size, grid_size, max_points, max_voxels)
        voxels.append(v)
        nums.append(n)
        coords.append(torch.cat([torch.full_like(c[:, :1], b), c], 1))
    return torch.cat(voxels), torch.cat(nums), torch.cat(coords)


def _bn2d(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


class SparseBasicBlock(nn.Module):
    """Two submanifold 3x3x3 convs with BN, ReLU and an identity shortcut (mmdet3d ``SparseBasicBlock``)."""

    def __init__(self, channels: int, indice_key: str | None = None):
        super().__init__()
        self.conv1 = SparseConv3d(channels, channels, 3, subm=True, indice_key=indice_key)
        self.bn1 = SparseBatchNorm(channels)
        self.conv2 = SparseConv3d(channels, channels, 3, subm=True, indice_key=indice_key)
        self.bn2 = SparseBatchNorm(channels)

    def forward(self, x):
        """A `SparseTensor` or an spconv ``SparseConvTensor`` (same sites out)."""
        out = self.bn1(self.conv1(x))
        out = self.bn2(self.conv2(out.replace_feature(torch.relu(out.features))))
        return out.replace_feature(torch.relu(out.features + x.features))


def _require_spconv() -> None:
    """Import spconv 2 or raise `MissingDependency`: no zoo extra installs it, since its wheels are built per CUDA
    version."""
    try:
        import spconv.pytorch  # noqa: F401
    except ImportError as exc:
        raise MissingDependency(f"'spconv' is required for backend='spconv' but is not installed ({exc}); install "
                                f"the spconv 2 wheel built for your CUDA (e.g. pip install spconv-cu120), or use "
                                f"backend='torch' (the same result)") from None


class SparseEncoder(nn.Module):
    """mmdet3d ``SparseEncoder`` with ``block_type='basicblock'`` as configured by CMT.

    Stages ``encoder_channels`` ((16, 16, 32), (32, 32, 64), (64, 64, 128), (128, 128)): basic blocks, and a
    stride-2 3x3x3 sparse conv closing stages 1-3 with ``encoder_paddings`` (1, 1, (0, 1, 1)); then a (3, 1, 1)
    stride-(2, 1, 1) conv. For a 41-cell z axis the output has 2 z cells, folded into 2 x 128 = 256 channels.

    Args:
        in_channels: point feature channels (5); sparse_shape: (Z, Y, X) of the voxel grid.
        backend: ``torch`` (`sparse_conv`), ``spconv`` (spconv 2, which must be installed) or ``auto`` (spconv
            when it imports, else torch). Both use the same parameters and give the same result.
    """

    def __init__(self, in_channels: int = 5, sparse_shape=(41, 1024, 1024), base_channels: int = 16,
                 output_channels: int = 128,
                 encoder_channels=((16, 16, 32), (32, 32, 64), (64, 64, 128), (128, 128)),
                 encoder_paddings=(1, 1, (0, 1, 1)), backend: str = "auto"):
        super().__init__()
        if backend not in ("auto", "torch", "spconv"):
            raise ZooError(f"sparse backend must be auto, torch or spconv, got {backend!r}")
        if backend == "spconv":
            _require_spconv()
        self.backend = backend
        self.sparse_shape = tuple(sparse_shape)
        self.conv_input = nn.Sequential(SparseConv3d(in_channels, base_channels, 3, subm=True, indice_key="subm1"),
                                        SparseBatchNorm(base_channels), SparseReLU())
        stages, c = [], base_channels
        for i, chans in enumerate(encoder_channels):
            blocks = []
            for j, out in enumerate(chans):
                if j == len(chans) - 1 and i != len(encoder_channels) - 1:
                    blocks.append(nn.Sequential(SparseConv3d(c, out, 3, stride=2, padding=encoder_paddings[i],
                                                             indice_key=f"spconv{i + 2}"),
                                                SparseBatchNorm(out), SparseReLU()))
                else:
                    blocks.append(SparseBasicBlock(out, indice_key=f"subm{i + 1}"))
                c = out
            stages.append((f"encoder_layer{i + 1}", nn.Sequential(*blocks)))
        self.encoder_layers = nn.Sequential(OrderedDict(stages))
        self.conv_out = nn.Sequential(SparseConv3d(c, output_channels, (3, 1, 1), stride=(2, 1, 1),
                                                   indice_key="spconv_down2"),
                                      SparseBatchNorm(output_channels), SparseReLU())
        z = self.sparse_shape[0]
        for pad in encoder_paddings:
            pz = pad[0] if isinstance(pad, (tuple, list)) else pad
            z = (z + 2 * pz - 3) // 2 + 1
        z_out = (z - 3) // 2 + 1
        if z_out < 1:
            raise ZooError(f"sparse_shape {self.sparse_shape}: {self.sparse_shape[0]} z cells leave nothing after the "
                           f"encoder's downsampling; use at least 23 (41 for 0.2 m cells over 8 m)")
        self.out_channels = output_channels * z_out

    def uses_spconv(self) -> bool:
        if self.backend != "auto":
            return self.backend == "spconv"
        try:
            import spconv.pytorch  # noqa: F401
        except ImportError:
            return False
        return True

    def forward(self, voxel_features: torch.Tensor, coords: torch.Tensor, batch_size: int) -> torch.Tensor:
        """Voxel features [V, C], coords [V, 4] (b, z, y, x) -> BEV map [B, out_channels, Y/8, X/8]."""
        if self.uses_spconv():
            import spconv.pytorch as sp

            x = sp.SparseConvTensor(voxel_features, coords.int(), list(self.sparse_shape), batch_size)
        else:
            x = SparseTensor(voxel_features, coords, self.sparse_shape, batch_size)
        x = self.conv_out(self.encoder_layers(self.conv_input(x)))
        dense = x.dense()  # [B, C, D, H, W]
        b, c, d, h, w = dense.shape
        return dense.view(b, c * d, h, w)


class PillarEncoder(nn.Module):
    """A dynamic PointPillars encoder: every point (or the first ``max_points`` of each pillar) gets its features,
    the offset to its pillar's point mean (3) and to the pillar centre (x, y); Linear (no bias) + BN + ReLU; max
    over the pillar's points; the pillars are scattered into a BEV canvas, then stride-2 conv stages reach the BEV
    stride.

    Args:
        in_channels: point features (5); pillar_channels: PFN width (64);
        grid_size: (X, Y) pillars; pillar_size: (px, py) m; pc_range: (x0, y0, z0, x1, y1, z1);
        out_channels: BEV channels; num_downsample: stride-2 stages after the canvas.
        max_points: keep at most this many points per pillar, the first ones, as hard voxelisation does (None: all).
            Under masked-modal training a frame whose points are zeroed puts all of them in one pillar at the
            origin; without a cap those identical points dominate the point BatchNorm's statistics.
    """

    def __init__(self, in_channels: int = 5, pillar_channels: int = 64, grid_size=(540, 540),
                 pillar_size=(0.2, 0.2), pc_range=(-54.0, -54.0, -5.0, 54.0, 54.0, 3.0), out_channels: int = 256,
                 num_downsample: int = 2, max_points: int | None = None):
        super().__init__()
        self.max_points = max_points
        self.grid_size, self.pillar_size, self.pc_range = tuple(grid_size), tuple(pillar_size), tuple(pc_range)
        self.pfn = nn.Linear(in_channels + 5, pillar_channels, bias=False)
        self.pfn_norm = nn.BatchNorm1d(pillar_channels, eps=1e-3, momentum=0.01)
        stages, c = [], pillar_channels
        for i in range(num_downsample):
            out = out_channels // 2 ** (num_downsample - 1 - i)
            stages.append(nn.Sequential(nn.Conv2d(c, out, 3, 2, 1, bias=False), _bn2d(out), nn.ReLU(inplace=True),
                                        nn.Conv2d(out, out, 3, 1, 1, bias=False), _bn2d(out), nn.ReLU(inplace=True)))
            c = out
        self.downsample = nn.Sequential(*stages)
        self.out_channels = c

    def forward(self, points: list[torch.Tensor]) -> torch.Tensor:
        """Points (list of [P_i, C]) -> BEV map [B, out_channels, Y / 2^n, X / 2^n]."""
        nx, ny = self.grid_size
        pts = torch.cat(points)
        batch = torch.cat([torch.full((len(p),), b, device=pts.device) for b, p in enumerate(points)])
        lo = pts.new_tensor(self.pc_range[:2])
        size = pts.new_tensor(self.pillar_size)
        cell = torch.floor((pts[:, :2] - lo) / size).long()
        z_ok = (pts[:, 2] >= self.pc_range[2]) & (pts[:, 2] < self.pc_range[5])
        ok = z_ok & (cell[:, 0] >= 0) & (cell[:, 0] < nx) & (cell[:, 1] >= 0) & (cell[:, 1] < ny)
        pts, cell, batch = pts[ok], cell[ok], batch[ok]
        key = (batch * ny + cell[:, 1]) * nx + cell[:, 0]
        uniq, pid = torch.unique(key, return_inverse=True)
        if self.max_points is not None:
            keep = rank_in_group(pid) < self.max_points
            pts, cell, pid = pts[keep], cell[keep], pid[keep]
        count = torch.bincount(pid, minlength=len(uniq)).to(pts)
        mean = pts.new_zeros(len(uniq), 3).index_add_(0, pid, pts[:, :3]) / count[:, None]
        centre = (cell.to(pts) + 0.5) * size + lo
        feats = torch.cat([pts, pts[:, :3] - mean[pid], pts[:, :2] - centre], 1)
        x = torch.relu(self.pfn_norm(self.pfn(feats)))
        pillars = x.new_zeros(len(uniq), x.shape[1]).scatter_reduce(0, pid[:, None].expand_as(x), x, "amax",
                                                                     include_self=False)
        canvas = x.new_zeros(len(points) * ny * nx, x.shape[1])
        canvas[uniq] = pillars
        canvas = canvas.view(len(points), ny, nx, -1).permute(0, 3, 1, 2).contiguous()
        return self.downsample(canvas)


class SECOND(nn.Module):
    """SECOND's 2D backbone: per stage a strided 3x3 conv and ``layer_nums`` more 3x3 convs, each + BN + ReLU."""

    def __init__(self, in_channels: int = 256, out_channels=(128, 256), layer_nums=(5, 5), layer_strides=(1, 2)):
        super().__init__()
        blocks, c = [], in_channels
        for out, n, s in zip(out_channels, layer_nums, layer_strides):
            layers = [nn.Conv2d(c, out, 3, s, 1, bias=False), _bn2d(out), nn.ReLU(inplace=True)]
            for _ in range(n):
                layers += [nn.Conv2d(out, out, 3, 1, 1, bias=False), _bn2d(out), nn.ReLU(inplace=True)]
            blocks.append(nn.Sequential(*layers))
            c = out
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[B, C, H, W] -> one map per stage."""
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        return outs


class SECONDFPN(nn.Module):
    """Upsample every SECOND stage to the first stage's stride (1x1 conv or transposed conv + BN + ReLU) and
    concatenate: [B, sum(out_channels), H, W]. Upsampled maps are cropped to the first stage's size, which only
    matters for odd BEV sizes (mmdet3d's SECONDFPN would fail on them)."""

    def __init__(self, in_channels=(128, 256), out_channels=(256, 256), upsample_strides=(1, 2)):
        super().__init__()
        deblocks = []
        for c_in, c_out, s in zip(in_channels, out_channels, upsample_strides):
            up = (nn.ConvTranspose2d(c_in, c_out, s, stride=s, bias=False) if s > 1
                  else nn.Conv2d(c_in, c_out, 1, bias=False))
            deblocks.append(nn.Sequential(up, _bn2d(c_out), nn.ReLU(inplace=True)))
        self.deblocks = nn.ModuleList(deblocks)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        ups = [d(f) for d, f in zip(self.deblocks, feats)]
        h, w = ups[0].shape[-2:]  # an odd BEV size (e.g. 135) comes back one cell larger from the strided stage
        return torch.cat([u[..., :h, :w] for u in ups], 1)

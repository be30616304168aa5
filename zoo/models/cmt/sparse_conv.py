"""3D sparse convolutions in plain PyTorch (gather, matrix multiply, scatter per kernel offset).

Semantics and weight layout follow spconv 2 (``SubMConv3d``, ``SparseConv3d``), so the authors' sparse encoder
weights load unchanged: weights are [C_out, kD, kH, kW, C_in] and output site q receives
sum_k W[:, k, :] @ x[q * stride - padding + k] (cross-correlation, as ``torch.nn.Conv3d``).

* submanifold: output sites are the input sites (the receptive field is centred);
* regular sparse: output sites are every q whose receptive field contains an active input.

Sites are found by hashing (z, y, x, batch) into one int64 key and ``searchsorted`` on the sorted keys; this
runs on any device and needs no compiled extension. When spconv 2 is installed, `SparseConv3d` can run through
spconv instead (its ``SparseConvTensor`` flows through the same modules; the parameters are shared), which is
faster on GPUs: see ``sparse_backend`` of `zoo.models.cmt.model.CMT`.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import torch
from torch import nn


@dataclass
class SparseTensor:
    """features [N, C]; indices [N, 4] int64 (batch, z, y, x); spatial_shape (D, H, W); batch_size."""

    features: torch.Tensor
    indices: torch.Tensor
    spatial_shape: tuple[int, int, int]
    batch_size: int

    def replace_feature(self, features: torch.Tensor) -> "SparseTensor":
        """Same sites, new features (the name spconv's ``SparseConvTensor`` uses, so modules accept both)."""
        return SparseTensor(features, self.indices, self.spatial_shape, self.batch_size)

    def dense(self) -> torch.Tensor:
        """[B, C, D, H, W] with zeros at inactive sites."""
        d, h, w = self.spatial_shape
        out = self.features.new_zeros(self.batch_size, d, h, w, self.features.shape[1])
        b, z, y, x = self.indices.unbind(1)
        out[b, z, y, x] = self.features
        return out.permute(0, 4, 1, 2, 3).contiguous()


def _keys(indices: torch.Tensor, shape) -> torch.Tensor:
    d, h, w = shape
    return ((indices[:, 0] * d + indices[:, 1]) * h + indices[:, 2]) * w + indices[:, 3]


def _lookup(sorted_keys: torch.Tensor, order: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """Row of each query key in the original (unsorted) key array, -1 where absent."""
    pos = torch.searchsorted(sorted_keys, query).clamp_max(len(sorted_keys) - 1)
    found = sorted_keys[pos] == query
    return torch.where(found, order[pos], torch.full_like(pos, -1))


def sparse_conv3d(x: SparseTensor, weight: torch.Tensor, stride=(1, 1, 1), padding=(0, 0, 0),
                  subm: bool = False, bias: torch.Tensor | None = None) -> SparseTensor:
    """One sparse 3D convolution.

    Args:
        x: input sparse tensor; weight: [C_out, kD, kH, kW, C_in].
        stride, padding: per axis (z, y, x); ignored (1 and centred) when ``subm``.
        subm: submanifold convolution (output sites = input sites).
    Returns:
        The output sparse tensor ([M, C_out] features).
    """
    kernel = tuple(weight.shape[1:4])
    n, device = len(x.indices), x.features.device
    spatial = torch.tensor(x.spatial_shape, device=device)
    if subm:
        out_shape, out_indices = x.spatial_shape, x.indices
        stride_t, pad_t = torch.ones(3, dtype=torch.long, device=device), torch.tensor([k // 2 for k in kernel],
                                                                                       device=device)
    else:
        stride_t, pad_t = torch.tensor(stride, device=device), torch.tensor(padding, device=device)
        out_shape = tuple(int(v) for v in (spatial + 2 * pad_t - torch.tensor(kernel, device=device)) // stride_t + 1)
        cands = []
        for off in product(*(range(k) for k in kernel)):
            q = x.indices[:, 1:] + pad_t - torch.tensor(off, device=device)
            ok = ((q % stride_t) == 0).all(1)
            q = q // stride_t
            ok &= ((q >= 0) & (q < torch.tensor(out_shape, device=device))).all(1)
            cands.append(torch.cat([x.indices[ok, :1], q[ok]], 1))
        out_indices = torch.unique(torch.cat(cands), dim=0) if n else x.indices.new_zeros(0, 4)
    in_keys = _keys(x.indices, x.spatial_shape)
    sorted_in, order = torch.sort(in_keys)
    out = x.features.new_zeros(len(out_indices), weight.shape[0])
    for k_index, off in enumerate(product(*(range(k) for k in kernel))):
        src = out_indices[:, 1:] * stride_t - pad_t + torch.tensor(off, device=device)
        inside = ((src >= 0) & (src < spatial)).all(1)
        rows = torch.nonzero(inside).squeeze(1)
        src_keys = _keys(torch.cat([out_indices[rows, :1], src[rows]], 1), x.spatial_shape)
        j = _lookup(sorted_in, order, src_keys)
        hit = j >= 0
        if hit.any():
            w = weight[:, off[0], off[1], off[2], :]  # [C_out, C_in]
            out.index_add_(0, rows[hit], x.features[j[hit]] @ w.t())
    if bias is not None:
        out = out + bias
    return SparseTensor(out, out_indices, out_shape, x.batch_size)


class SparseConv3d(nn.Module):
    """spconv-2-compatible sparse convolution module (``weight`` [C_out, kD, kH, kW, C_in], no bias by default).

    A `SparseTensor` input runs `sparse_conv3d`; an spconv ``SparseConvTensor`` runs spconv's own module, which
    shares this module's parameters (``indice_key`` lets spconv reuse the rulebooks of layers with equal sites).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=0,
                 subm: bool = False, bias: bool = False, indice_key: str | None = None):
        super().__init__()
        self.in_channels, self.out_channels, self.indice_key = in_channels, out_channels, indice_key
        k = (kernel_size,) * 3 if isinstance(kernel_size, int) else tuple(kernel_size)
        self.stride = (stride,) * 3 if isinstance(stride, int) else tuple(stride)
        self.padding = (padding,) * 3 if isinstance(padding, int) else tuple(padding)
        self.subm = subm
        self.weight = nn.Parameter(torch.empty(out_channels, *k, in_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight.view(out_channels, -1), a=5 ** 0.5)

    def forward(self, x):
        if isinstance(x, SparseTensor):
            return sparse_conv3d(x, self.weight, self.stride, self.padding, self.subm, self.bias)
        return self._spconv()(x)

    def _spconv(self):
        """spconv's module for this layer, created once, holding this layer's parameters (not registered as a
        child, so the state dict is unchanged)."""
        if "_spconv_module" not in self.__dict__:
            import spconv.pytorch as sp

            k = tuple(self.weight.shape[1:4])
            if self.subm:
                m = sp.SubMConv3d(self.in_channels, self.out_channels, k, bias=False, indice_key=self.indice_key)
            else:
                m = sp.SparseConv3d(self.in_channels, self.out_channels, k, stride=self.stride, padding=self.padding,
                                    bias=False, indice_key=self.indice_key)
            m.weight = self.weight
            m.bias = self.bias
            self.__dict__["_spconv_module"] = m
        return self.__dict__["_spconv_module"]


class SparseBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d over the features of a sparse tensor (mmdet3d's sparse encoders: eps 1e-3, momentum 0.01)."""

    def __init__(self, channels: int):
        super().__init__(channels, eps=1e-3, momentum=0.01)

    def forward(self, x):
        return x.replace_feature(super().forward(x.features))


class SparseReLU(nn.Module):
    def forward(self, x):
        return x.replace_feature(torch.relu(x.features))
